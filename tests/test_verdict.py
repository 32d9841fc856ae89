"""The held-out verdict over two real searches (TPE and CMA-ES) on the test-scale recycling pool:
an lm_loss and a multiple-choice objective, a left-out task, every row grouped by its source."""

from __future__ import annotations

import pytest

from contracts import Proposal, SearchSpec, TrialResult, TrialStatus
from proposer import normalization_of
from recycle.local.runtime import run_search
from recycle.local.significance import expected_noise_range
from recycle.local.verdict import BASELINES, StaleRunError, _front_merges, _rival, held_out_verdict


@pytest.fixture(scope="module")
def runs(recycling_pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("verdict")
    runs = {}
    for strategy in ("tpe", "cmaes"):
        spec = SearchSpec(pool=recycling_pool.pool, tasks=recycling_pool.tasks, left_out_tasks=recycling_pool.left_out_tasks,
                          strategy=strategy, budget=24, concurrency=2, seed=3)
        driver = run_search(spec, f"verdict-{strategy}", out / f"{strategy}.jsonl", workers=2)
        runs[strategy] = spec, driver.store.results(f"verdict-{strategy}")
    return runs


@pytest.fixture(scope="module")
def verdict(runs):
    return held_out_verdict(runs, resamples=500)


def test_verdict_compares_each_search_s_merge_with_every_baseline(runs, verdict, recycling_pool):
    labels = [e.label for e in verdict.entries]
    assert labels == [*BASELINES, "optimized merge (tpe)", "optimized merge (cmaes)"]
    spec, results = runs["tpe"]
    scale = normalization_of(spec, results)
    assert verdict.normalization == scale
    # Every baseline is picked on the search split, the best single too (never on held-out data).
    singles = [r for r in results if r.status is TrialStatus.ok and r.proposal.source.kind == "single"]
    picked = verdict.entry("best single").result.proposal.source.checkpoint
    assert picked == min(singles, key=lambda r: scale.macro(r.scores)).proposal.source.checkpoint
    objectives = {t.name for t in recycling_pool.tasks}
    kinds = {t.kind for t in recycling_pool.tasks}
    assert kinds == {"lm_loss", "multiple_choice"}  # mixed units, on one scale
    for entry in verdict.entries:
        # Re-scored item by item: the trial's own held-out scores, to rounding.
        assert {k: v for k, v in entry.held_out.items() if k in objectives} == pytest.approx(entry.result.report, rel=1e-4)
        assert entry.held_out_macro == pytest.approx(scale.macro(entry.held_out))
        assert "decimal" in entry.held_out  # the left-out task, scored held out only
    for merge in verdict.merges:
        by_baseline = verdict.comparisons[merge.label]
        assert set(by_baseline) == set(BASELINES)
        for baseline, decision in by_baseline.items():
            # The macro is linear in the task scores: the test's difference is the table's difference.
            assert decision.test.diff == pytest.approx(verdict.entry(baseline).held_out_macro - merge.held_out_macro)
            assert decision.low <= decision.high and 0.9 <= decision.confidence < 1
        [(task, left_out)] = verdict.left_out[merge.label].items()
        greedy = verdict.entry("greedy soup").held_out["decimal"]
        assert task == "decimal" and left_out.test.diff == pytest.approx(greedy - merge.held_out["decimal"])
    # The singles' held-out spread in standard errors, per objective, against what chance gives 17 equals.
    assert set(verdict.signal) == objectives and all(value > 0 for value in verdict.signal.values())
    assert verdict.noise_range == pytest.approx(expected_noise_range(len(recycling_pool.pool.names)))
    checked = [d for d in verdict.dominance if d.decision is not None]
    assert verdict.family_size == 2 * 3 + 2 * 1 + len(checked)
    assert {d.single for d in verdict.dominance} == set(recycling_pool.pool.names)
    point, confident, singles = verdict.dominated_counts()
    assert confident <= point <= singles == len(recycling_pool.pool.names)


def test_groups_per_split_are_reported_and_never_shared(verdict, recycling_pool):
    assert set(verdict.groups) == {t.name for t in (*recycling_pool.tasks, *recycling_pool.left_out_tasks)}
    for task, counts in verdict.groups.items():
        assert counts["search"] >= 1 and counts["report"] >= 1, task
    summary = verdict.as_dict()
    assert summary["bootstrap_unit"] == "group" and summary["correction"] == "holm"
    assert summary["dominated"]["singles"] == len(recycling_pool.pool.names)


def test_the_selected_merge_is_the_strategy_s_best_on_the_search_split(runs, verdict):
    spec, results = runs["tpe"]
    scale = normalization_of(spec, results)
    own = [r for r in results if r.status.value == "ok" and not r.proposal.source.is_baseline]  # not the soups
    assert verdict.entry("optimized merge (tpe)").result == min(own, key=lambda r: scale.macro(r.scores))


def test_a_run_whose_files_changed_since_is_refused(runs):
    spec, results = runs["tpe"]
    # As if the task files had changed: every stored held-out score is 10% off what re-scoring gives.
    drifted = [r.model_copy(update={"report": {k: v * 1.1 + 0.1 for k, v in r.report.items()}}) for r in results]
    with pytest.raises(StaleRunError, match="changed since"):
        held_out_verdict({"tpe": (spec, drifted)}, resamples=100)


def test_trials_without_held_out_scores_get_the_same_verdict(runs, verdict, tmp_path):
    """report_every_trial=False: trials score the search split alone and the verdict scores the
    held-out split of what it judges; the same searches then get the same verdict."""
    lean = {}
    for strategy in ("tpe", "cmaes"):
        spec = runs[strategy][0].model_copy(update={"report_every_trial": False})
        driver = run_search(spec, f"lean-{strategy}", tmp_path / f"{strategy}.jsonl", workers=2)
        results = driver.store.results(f"lean-{strategy}")
        assert all(r.report == {} and r.scores for r in results if r.status.value == "ok")
        # The embedded runtime is deterministic: the same trials as the searches that scored both splits.
        assert [r.scores for r in results] == [r.scores for r in runs[strategy][1]]
        lean[strategy] = spec, results
    without = held_out_verdict(lean, resamples=500)
    for a, b in zip(verdict.entries, without.entries):
        assert (a.label, a.result.proposal.weights) == (b.label, b.result.proposal.weights)
        assert b.held_out == pytest.approx(a.held_out, rel=1e-6)
    def intervals(v):
        return [(m, b, d.test.diff, d.low, d.high) for m, by in v.comparisons.items() for b, d in by.items()]

    assert [i[:2] for i in intervals(without)] == [i[:2] for i in intervals(verdict)]
    flat = [x for i in intervals(verdict) for x in i[2:]]
    assert [x for i in intervals(without) for x in i[2:]] == pytest.approx(flat, abs=1e-9)
    assert [d.rival is None for d in without.dominance] == [d.rival is None for d in verdict.dominance]


def _trial(spec, number: int, source: str, scores: dict[str, float]) -> TrialResult:
    weights = tuple(1.0 if i == number % len(spec.pool.names) else 0.0 for i in range(len(spec.pool.names)))
    proposal = Proposal(search_id="d", trial_id=Proposal.make_trial_id("d", number), number=number, weights=weights, source=source)
    return TrialResult(proposal=proposal, status=TrialStatus.ok, scores=scores)


def test_each_single_s_rival_is_chosen_on_the_search_split_in_advance(runs):
    """The front member that dominates the single on the search split by the largest worst-task
    margin; one better only where the single is worse, or a single itself, never."""
    spec = runs["tpe"][0]
    names = [o.name for o in spec.objectives]
    scale = normalization_of(spec, runs["tpe"][1])

    def better_by(*margins):  # margins on the normalized scale, positive: better than the single
        base = {n: 0.0 for n in names}
        return {o.name: base[o.name] + (-m if o.direction.sign > 0 else m) * s
                for o, m, s in zip(spec.objectives, margins, scale.scale)}

    single = _trial(spec, 0, f"single:{spec.pool.names[0]}", better_by(*[0.0] * len(names)))
    tradeoff = _trial(spec, 1, "tpe", better_by(0.5, *[-0.1] * (len(names) - 1)))
    shallow = _trial(spec, 2, "tpe", better_by(*[0.02] * len(names)))
    deep = _trial(spec, 3, "cmaes", better_by(0.01, *[0.05] * (len(names) - 1)))
    other_single = _trial(spec, 4, f"single:{spec.pool.names[1]}", better_by(*[0.3] * len(names)))
    front = _front_merges([single, tradeoff, shallow, deep, other_single], scale)
    assert _rival(single, front, scale) is None  # other_single dominates everything but is a single
    front = _front_merges([single, tradeoff, shallow, deep], scale)
    assert _rival(single, front, scale) == shallow  # worst-task margin 0.02 beats deep's 0.01
    assert _rival(tradeoff, front, scale) is None


def test_the_printed_verdict_says_how_far_the_singles_stand_above_noise(verdict, runs):
    from rich.console import Console

    from recycle.local.report import print_verdict

    spec, _ = runs["tpe"]
    console = Console(record=True, width=200)
    print_verdict(verdict, spec, console)
    text = console.export_text()
    assert "held-out spread, in standard errors" in text and f"by {verdict.noise_range:.1f} by chance" in text
    for task, value in verdict.signal.items():
        assert f"{task} {value:.1f}" in text
        assert (f"task {task}: the singles differ no more than noise" in text) == (value < verdict.noise_range)
