"""The embedded runtime: real evaluations on the test-scale demo pool, two worker threads."""

from __future__ import annotations

import json
import time

import pytest

from contracts import SearchSpec
from recycle.local import runtime


EVALUATE = runtime.EvaluatorPool.evaluate  # the real one: each run wraps it afresh


def run_with_delays(spec, out, monkeypatch, slow) -> list[dict]:
    """Runs the search with trials whose number satisfies `slow` held back, so that
    they return after younger ones; returns trials.jsonl's records."""

    def delayed(self, proposal):
        if slow(proposal.number):
            time.sleep(0.3)
        return EVALUATE(self, proposal)

    monkeypatch.setattr(runtime.EvaluatorPool, "evaluate", delayed)
    runtime.run_search(spec, "repro", out, workers=2)
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("strategy", ["tpe", "cmaes"])
def test_a_search_is_the_same_whichever_thread_finishes_first(demo_pool, tmp_path, monkeypatch, strategy):
    spec = SearchSpec(pool=demo_pool.pool, tasks=demo_pool.tasks, strategy=strategy, budget=16, concurrency=2, seed=5)
    odd_slow = run_with_delays(spec, tmp_path / "a.jsonl", monkeypatch, lambda n: n % 2 == 1)
    even_slow = run_with_delays(spec, tmp_path / "b.jsonl", monkeypatch, lambda n: n % 2 == 0)

    def trials(records):
        return [(r["proposal"]["number"], r["proposal"]["source"], r["proposal"]["weights"], r["scores"]) for r in records]

    assert len(odd_slow) == len(even_slow) == 16
    # Recorded in trial order, and every proposal and score identical in both runs.
    assert [r["proposal"]["number"] for r in odd_slow] == list(range(16))
    assert trials(odd_slow) == trials(even_slow)
    assert any(r["proposal"]["source"]["kind"] == strategy for r in odd_slow)  # the strategy itself was asked


def test_a_resumed_search_runs_the_trials_it_had_in_flight(demo_pool, tmp_path):
    """A store holding proposals without results (the process stopped mid-trial):
    those trials run first, then the search carries on to its budget."""
    from proposer import MemoryStore, SearchDriver

    spec = SearchSpec(pool=demo_pool.pool, tasks=demo_pool.tasks, strategy="random", budget=8, concurrency=2, seed=1)
    store = MemoryStore()
    store.create_search("resumed", spec)
    interrupted = SearchDriver("resumed", spec, store).propose(2)

    driver = runtime.run_search(spec, "resumed", tmp_path / "trials.jsonl", store=store, workers=2)
    assert driver.finished and len(store.results("resumed")) == 8
    results = {r.proposal.number: r for r in store.results("resumed")}
    assert [results[p.number].proposal for p in interrupted] == interrupted


def test_a_search_gives_the_cores_back_when_it_ends(demo_pool, tmp_path):
    """Worker threads share the cores during a search; what runs after it (the verdict) gets them all."""
    import torch

    spec = SearchSpec(pool=demo_pool.pool, tasks=demo_pool.tasks, budget=3, concurrency=2)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # with 2 workers a search on a 2-core machine sets 1
    try:
        runtime.run_search(spec, "threads", tmp_path / "t.jsonl", workers=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
