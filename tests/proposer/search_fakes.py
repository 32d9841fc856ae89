"""Specs, a toy evaluator and a simulated worker pool for the proposer tests."""

from __future__ import annotations

import random
from typing import Callable, Sequence

from contracts import CheckpointRef, MergeSpec, PoolSpec, Proposal, SearchSpec, TaskSpec, TrialResult, TrialStatus


def make_spec(n_checkpoints: int = 4, **fields) -> SearchSpec:
    pool = PoolSpec(
        name="pool",
        checkpoints=tuple(CheckpointRef(name=f"c{i}", path=f"/ckpt/c{i}") for i in range(n_checkpoints)),
    )
    tasks = (
        TaskSpec(name="nll", kind="lm_loss", path="/data/nll.jsonl"),
        TaskSpec(name="acc", kind="multiple_choice", path="/data/acc.jsonl"),
    )
    if "base" in fields:
        fields["merge"] = MergeSpec(normalize=False, base=fields.pop("base"))
    return SearchSpec(pool=pool, tasks=tasks, **fields)


def toy_scores(weights: Sequence[float]) -> dict[str, float]:
    """Two conflicting tasks: nll (minimize) is best near c0, acc (maximize) near the last checkpoint."""
    n = len(weights)
    near_first = sum((w - (1.0 if i == 0 else 0.0)) ** 2 for i, w in enumerate(weights))
    near_last = sum((w - (1.0 if i == n - 1 else 0.0)) ** 2 for i, w in enumerate(weights))
    return {"nll": 2.0 + near_first, "acc": 0.9 - 0.5 * near_last}


def ok(proposal: Proposal, scores: dict[str, float] | None = None) -> TrialResult:
    scores = scores if scores is not None else toy_scores(proposal.weights)
    return TrialResult(proposal=proposal, status=TrialStatus.ok, scores=scores)


def failed(proposal: Proposal) -> TrialResult:
    return TrialResult(proposal=proposal, status=TrialStatus.failed, error="worker died")


def run(
    driver,
    evaluate: Callable[[Proposal], TrialResult] = ok,
    concurrency: int = 3,
    rng: random.Random | None = None,
    stop_after: int | None = None,
    in_flight: list[Proposal] | None = None,
) -> list[Proposal]:
    """Workers that finish in a random order; returns what is still in flight.

    Stops when the search is finished or after `stop_after` results. Passing the
    same `rng` on to a second call continues the same sequence of events.
    """
    rng = rng or random.Random(0)
    in_flight = list(in_flight or [])
    recorded = 0
    while stop_after is None or recorded < stop_after:
        in_flight += driver.propose(concurrency - len(in_flight))
        if not in_flight:
            break
        proposal = in_flight.pop(rng.randrange(len(in_flight)))
        driver.record(evaluate(proposal))
        recorded += 1
    return in_flight


def ask_tell_script(strategy, loss, fails, n_trials, concurrency, seed, external):
    """Asynchronous ask/tell: `external` (number, weights) results told first (points the strategy
    never asked, e.g. baselines), then up to `concurrency` asks in flight whose results come back
    in a seeded random order; the trials for which `fails(number)` holds fail. Returns everything
    asked and told, in order, as a store would hold it (for replays)."""
    rng = random.Random(seed)
    asked, told = [], []
    for number, weights in external:
        value = loss(weights)
        strategy.tell(number, weights, value)
        told.append((number, weights, value))
    number = 1 + max((n for n, _ in external), default=-1)
    pending = []
    while number < n_trials or pending:
        while number < n_trials and len(pending) < concurrency:
            [weights] = strategy.ask([number])
            asked.append((number, weights))
            pending.append((number, weights))
            number += 1
        done, weights = pending.pop(rng.randrange(len(pending)))
        value = None if fails(done) else loss(weights)
        strategy.tell(done, weights, value)
        told.append((done, weights, value))
    return asked, told
