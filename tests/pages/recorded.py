"""Searches written straight into a store as the proposer records them, for the page tests:
any number of objectives, a greedy step equal to the uniform soup, strategy trials, one
failure, and optionally trials left in flight. No models: checkpoint paths are never read."""

from __future__ import annotations

import random
import time

from contracts import Proposal, SearchSpec, SearchStatus, TrialResult, TrialStatus

TASKS = ("code", "docs", "prose", "math")
CHECKPOINTS = ("base", "code-ft", "docs-ft", "prose-ft")


def spec_for(n_objectives: int, strategy: str = "tpe", budget: int = 40) -> SearchSpec:
    return SearchSpec.model_validate({
        "pool": {"name": "recorded-pool", "checkpoints": [{"name": c, "path": f"/nowhere/{c}"} for c in CHECKPOINTS]},
        "tasks": [{"name": t, "kind": "lm_loss", "path": f"/nowhere/{t}.jsonl"} for t in TASKS[:n_objectives]],
        "strategy": strategy, "budget": budget, "concurrency": 2, "seed": 0,
    })


def scores_of(weights, tasks, noise: float) -> dict[str, float]:
    """Checkpoint k is good at task k-1 (the base at the 4th); a mix does better than its parts."""
    mixing = 1.0 - sum(w * w for w in weights)
    good = lambda k, t: (k - 1) % len(CHECKPOINTS) == t
    return {task: 3.0 + sum(w * (0.4 if good(k, t) else 1.0) for k, w in enumerate(weights)) - 0.25 * mixing + noise
            for t, task in enumerate(tasks)}


def record(store, search_id: str, n_objectives: int, n_trials: int = 24, strategy: str = "tpe", seed: int = 0,
           status: SearchStatus = SearchStatus.completed, in_flight: int = 0, finished_ago: float = 0.0) -> SearchSpec:
    """Singles, the uniform soup, a greedy step with the uniform's weights, then strategy trials
    (the 8th fails) and `in_flight` proposals without results; results finished one second
    apart, the last `finished_ago` seconds ago."""
    spec = spec_for(n_objectives, strategy, budget=n_trials + in_flight)
    store.create_search(search_id, spec)
    n = len(CHECKPOINTS)
    uniform = tuple(1.0 / n for _ in range(n))
    plan = [(f"single:{c}", tuple(1.0 if j == i else 0.0 for j in range(n))) for i, c in enumerate(CHECKPOINTS)]
    plan += [("uniform", uniform), ("greedy", uniform)]
    draw = random.Random(seed)
    while len(plan) < n_trials + in_flight:
        raw = [draw.expovariate(1.0) for _ in range(n)]
        plan.append((strategy, tuple(x / sum(raw) for x in raw)))
    tasks = [o.name for o in spec.objectives]
    end = time.time() - finished_ago
    for number, (source, weights) in enumerate(plan):
        proposal = Proposal(search_id=search_id, trial_id=Proposal.make_trial_id(search_id, number), number=number,
                            weights=weights, source=source)
        store.add_proposal(proposal)
        if number >= n_trials:
            continue
        finished = end - (n_trials - 1 - number)
        if number == 7:
            store.record_result(TrialResult(proposal=proposal, status=TrialStatus.failed, error="worker lost",
                                            finished_at=finished))
            continue
        # Same weights, same scores: the greedy step lands exactly on the uniform soup.
        noise = 0.0 if source in ("uniform", "greedy") else 0.002 * draw.random()
        scores = scores_of(weights, tasks, noise)
        store.record_result(TrialResult(proposal=proposal, status=TrialStatus.ok, scores=scores,
                                        report={t: v + 0.05 for t, v in scores.items()}, worker="w1",
                                        merge_seconds=0.1, eval_seconds=0.4, total_seconds=0.5, finished_at=finished))
    store.set_status(search_id, status)
    return spec
