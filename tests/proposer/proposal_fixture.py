"""Proposals of fixed specs and seeds, recorded once, so a refactor of the proposer
can prove it proposes the same weights in the same order (tests/proposer/test_same_proposals.py).
Re-recorded only when the proposals are meant to change (last: issue 19's surrogate with
uncertainty, lq-CMA-ES and isometric log-ratios, from the working tree that introduced them).

Self-contained on purpose (contracts + proposer only, flat spec fields): the same file
records the fixture from an older commit's tree, e.g.

    git worktree add /tmp/base <commit>
    cd /tmp/base && PYTHONPATH=/tmp/base /work/main/.venv/bin/python \
        /work/main/tests/proposer/proposal_fixture.py /work/main/tests/proposer/fixtures/proposals.json
"""

from __future__ import annotations

import json
import math
import random
import sys

from contracts import CheckpointRef, PoolSpec, SearchSpec, TaskSpec, TrialResult, TrialStatus
from proposer import MemoryStore, SearchDriver

# name -> (checkpoints, concurrency, flat SearchSpec fields). Covers every proposal source:
# baselines (singles, uniform, shrunk, greedy), probes, the strategies with and without
# the surrogate, no baselines, task arithmetic.
CASES: dict[str, tuple[int, int, dict]] = {
    "tpe": (5, 2, {"strategy": "tpe", "budget": 30}),
    "tpe-no-surrogate": (5, 2, {"strategy": "tpe", "budget": 30, "surrogate": False}),
    "tpe-three-in-flight": (4, 3, {"strategy": "tpe", "budget": 26}),
    "tpe-no-baselines": (4, 2, {"strategy": "tpe", "budget": 20, "baselines": False}),
    "tpe-probes-shrunk": (4, 2, {"strategy": "tpe", "budget": 34, "shrunk_singles": 0.1, "dominance_probes": 10}),
    "tpe-probes": (4, 2, {"strategy": "tpe", "budget": 30, "dominance_probes": 10, "seed": 5}),
    "cmaes": (5, 3, {"strategy": "cmaes", "budget": 32}),
    "cmaes-no-surrogate": (5, 3, {"strategy": "cmaes", "budget": 32, "surrogate": False}),
    "cmaes-probes": (4, 2, {"strategy": "cmaes", "budget": 30, "dominance_probes": 8}),
    "random": (5, 2, {"strategy": "random", "budget": 16}),
    "tpe-task-arithmetic": (4, 2, {"strategy": "tpe", "budget": 24, "merge": {"normalize": False, "base": "c0"},
                                   "max_weight": 2.0, "dominance_probes": 8}),
    "cmaes-task-arithmetic": (4, 2, {"strategy": "cmaes", "budget": 24, "seed": 3,
                                     "merge": {"normalize": False, "base": "c0"}, "max_weight": 1.5}),
    "random-task-arithmetic": (4, 2, {"strategy": "random", "budget": 12, "merge": {"normalize": False, "base": "c0"},
                                      "shrunk_singles": 0.2}),
}


def spec_for(n_checkpoints: int, fields: dict) -> SearchSpec:
    pool = PoolSpec(name="pool", checkpoints=[CheckpointRef(name=f"c{i}", path=f"/c{i}") for i in range(n_checkpoints)])
    tasks = [TaskSpec(name="code", kind="lm_loss", path="/code"), TaskSpec(name="prose", kind="lm_loss", path="/prose"),
             TaskSpec(name="quiz", kind="multiple_choice", path="/quiz")]
    return SearchSpec.model_validate({"pool": pool, "tasks": tasks, **fields})


def scores(weights) -> dict[str, float]:
    """Three conflicting tasks, each best near its own checkpoint and not quadratic (saturating,
    with interactions); the corners are a little worse than a mix close to them (run noise), so
    some singles are dominated only by merges the probes find."""
    n = len(weights)
    total = sum(weights) or 1.0
    w = [x / total for x in weights]
    corner = 0.1 * max(w) ** 8

    def away(i: int) -> float:
        return sum((x - (1.0 if j == i else 0.0)) ** 2 for j, x in enumerate(w))

    code = 2.0 + math.tanh(away(0)) + corner + 0.3 * w[0] * w[-1]
    prose = 3.0 + math.log1p(2.0 * away(1)) + corner
    quiz = 0.8 - 0.3 * math.tanh(away(n - 1)) - corner + 0.05 * math.sqrt(sum(weights))
    return {"code": code, "prose": prose, "quiz": quiz}


def record(name: str) -> list[list]:
    """[number, source as text, weights] of every proposal of one case, in proposal order."""
    n_checkpoints, concurrency, fields = CASES[name]
    spec = spec_for(n_checkpoints, fields)
    store = MemoryStore()
    store.create_search("s", spec)
    driver = SearchDriver("s", spec, store)
    order = random.Random(7)
    in_flight, made = [], []
    while True:
        new = driver.propose(concurrency - len(in_flight))
        made += new
        in_flight += new
        if not in_flight:
            break
        proposal = in_flight.pop(order.randrange(len(in_flight)))
        if proposal.number % 11 == 10:  # every 11th trial fails
            result = TrialResult(proposal=proposal, status=TrialStatus.failed, error="worker died")
        else:
            result = TrialResult(proposal=proposal, status=TrialStatus.ok, scores=scores(proposal.weights))
        driver.record(result)
    return [[p.number, str(p.source), list(p.weights)] for p in made]


if __name__ == "__main__":
    recorded = {name: record(name) for name in CASES}
    with open(sys.argv[1], "w") as f:
        json.dump(recorded, f, indent=None)
        f.write("\n")
    print({name: len(v) for name, v in recorded.items()})
