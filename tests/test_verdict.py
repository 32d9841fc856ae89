"""The held-out verdict over two real searches (TPE and CMA-ES) on the test-scale demo pool."""

from __future__ import annotations

import pytest

from contracts import SearchSpec
from recycle.local.report import macro
from recycle.local.runtime import run_search
from recycle.local.verdict import BASELINES, StaleRunError, held_out_verdict


@pytest.fixture(scope="module")
def runs(demo_pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("verdict")
    runs = {}
    for strategy in ("tpe", "cmaes"):
        spec = SearchSpec(pool=demo_pool.pool, tasks=demo_pool.tasks, strategy=strategy, budget=12, concurrency=2, seed=3)
        driver = run_search(spec, f"verdict-{strategy}", out / f"{strategy}.jsonl", workers=2)
        runs[strategy] = spec, driver.store.results(f"verdict-{strategy}")
    return runs


def test_verdict_compares_each_search_s_merge_with_every_baseline(runs, demo_pool):
    verdict = held_out_verdict(runs, resamples=500)
    labels = [e.label for e in verdict.entries]
    assert labels == [*BASELINES, "optimized merge (tpe)", "optimized merge (cmaes)"]
    spec, results = runs["tpe"]
    for entry in verdict.entries:
        # Re-scored window by window: the trial's own held-out score, to rounding.
        assert entry.held_out_macro == pytest.approx(macro(entry.result, spec.objectives, "report"), rel=1e-4)
        assert entry.held_out == pytest.approx(entry.result.report, rel=1e-4)
        assert entry.held_out_macro == pytest.approx(sum(entry.held_out.values()) / len(entry.held_out))
        assert 1 <= entry.weights_used <= len(demo_pool.pool.names)
    for merge in verdict.merges:
        by_baseline = verdict.improvements[merge.label]
        assert set(by_baseline) == set(BASELINES)
        for baseline, improvement in by_baseline.items():
            # Re-scored window by window, the difference is the difference of the table's numbers.
            expected = verdict.entry(baseline).held_out_macro - merge.held_out_macro
            assert improvement.mean == pytest.approx(expected, abs=1e-5)
            assert improvement.low <= improvement.mean <= improvement.high
            assert improvement.windows == sum(task.max_items for task in demo_pool.tasks)
    assert set(verdict.singles_dominated_by) == set(demo_pool.pool.names)


def test_the_selected_merge_is_the_strategy_s_best_on_the_search_split(runs):
    verdict = held_out_verdict({"tpe": runs["tpe"]}, resamples=200)
    spec, results = runs["tpe"]
    merges = [r for r in results if r.proposal.source.kind == "tpe" and r.status.value == "ok"]  # not the soups
    assert verdict.entry("optimized merge").result == min(merges, key=lambda r: macro(r, spec.objectives, "scores"))
    summary = verdict.as_dict()
    assert set(summary["paired_bootstrap"]["optimized merge"]) == set(BASELINES)
    assert summary["held_out_macro"]["best single"] == verdict.entry("best single").held_out_macro


def test_a_run_whose_files_changed_since_is_refused(runs):
    spec, results = runs["tpe"]
    # As if the task files had changed: every stored held-out score is 10% off what re-scoring gives.
    drifted = [r.model_copy(update={"report": {k: v * 1.1 for k, v in r.report.items()}}) for r in results]
    with pytest.raises(StaleRunError, match="changed since"):
        held_out_verdict({"tpe": (spec, drifted)}, resamples=100)


def test_trials_without_held_out_scores_get_the_same_verdict(runs, demo_pool, tmp_path):
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
    full, without = held_out_verdict(runs, resamples=300), held_out_verdict(lean, resamples=300)
    assert [e.label for e in without.entries] == [e.label for e in full.entries]
    for a, b in zip(full.entries, without.entries):
        assert b.result.proposal.weights == a.result.proposal.weights
        assert b.held_out == pytest.approx(a.held_out, rel=1e-6)
    assert without.as_dict()["paired_bootstrap"] == full.as_dict()["paired_bootstrap"]
    assert without.singles_dominated_by.keys() == full.singles_dominated_by.keys()
    assert [w is None for w in without.singles_dominated_by.values()] == [w is None for w in full.singles_dominated_by.values()]


class _HeldOut:
    """Held-out scores by trial number, counting what the dominance check asks for."""

    def __init__(self, scores: dict[int, dict[str, float]]):
        self.scores, self.asked = scores, []

    def report(self, result):
        self.asked.append(result.proposal.number)
        return self.scores[result.proposal.number]


def _trial(spec, number: int, source: str, scores: dict[str, float]):
    from contracts import Proposal, TrialResult, TrialStatus

    weights = tuple(1.0 if i == number % len(spec.pool.names) else 0.0 for i in range(len(spec.pool.names)))
    proposal = Proposal(search_id="d", trial_id=Proposal.make_trial_id("d", number), number=number, weights=weights, source=source)
    return TrialResult(proposal=proposal, status=TrialStatus.ok, scores=scores)


def test_a_single_is_dominated_only_by_a_member_that_dominates_it_on_both_splits(runs):
    from recycle.local.verdict import MAX_DOMINANCE_CHECKS, _dominance_margins, _singles_dominated_by

    spec = runs["tpe"][0]
    tasks = [o.name for o in spec.objectives]

    def on(*values):
        return dict(zip(tasks, values))

    n = len(tasks)
    single = _trial(spec, 0, f"single:{spec.pool.names[0]}", on(*[1.0] * n))
    # Better on the held-out split only: not selected on the search split, never scored.
    lucky = _trial(spec, 1, "tpe", on(0.5, *[1.5] * (n - 1)))
    # Dominate on the search split, trading the first two tasks off (all on the front); the later
    # ones have the larger worst-task margin (0.99, 0.98, ... on the second task) and are scored first.
    close = [_trial(spec, 2 + i, "tpe", on(0.80 + 0.04 * i, 0.99 - 0.01 * i, *[0.90] * (n - 2)))
             for i in range(MAX_DOMINANCE_CHECKS + 1)]
    held_out = {0: on(*[1.0] * n), 1: on(*[0.1] * n)}
    held_out |= {t.proposal.number: on(*[1.01] * n) for t in close}  # none holds up on the held-out split
    scorer = _HeldOut(held_out)
    assert _singles_dominated_by([single, lucky, *close], spec, scorer) == {spec.pool.names[0]: None}
    # The deepest dominators first, and no more than MAX_DOMINANCE_CHECKS of them.
    assert scorer.asked[1:] == [t.proposal.number for t in reversed(close)][:MAX_DOMINANCE_CHECKS]

    held_out[close[-1].proposal.number] = on(0.97, *[0.98] * (n - 1))  # the deepest one holds up
    dominated_by = _singles_dominated_by([single, lucky, *close], spec, _HeldOut(held_out))
    assert dominated_by == {spec.pool.names[0]: close[-1].trial_id}
    # By 0.02 on every task but the first (0.03): the margin is the smaller.
    margins = _dominance_margins(dominated_by, [single, lucky, *close], spec, _HeldOut(held_out))
    assert margins == {spec.pool.names[0]: pytest.approx(0.02)}
