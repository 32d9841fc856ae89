"""The held-out verdict over two real searches (TPE and CMA-ES) on the test-scale demo pool."""

from __future__ import annotations

import pytest

from contracts import SearchSpec
from recycle.report import macro
from recycle.runtime import run_search
from recycle.verdict import BASELINES, StaleRunError, held_out_verdict


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
    merges = [r for r in results if r.proposal.source == "tpe" and r.status.value == "ok"]  # not the soups
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
