"""Dominance probes: the end game that aims at the singles no trial dominates yet."""

from __future__ import annotations

import random

import numpy as np
import pytest

from contracts import CheckpointRef, PoolSpec, Proposal, SearchSpec, TaskSpec, TrialResult, TrialStatus
from proposer.dominance import MAX_PROBES, dominance_probe, nearest_neighbour, next_step, probe_line
from proposer.pareto import dominates
from proposer.search import SearchDriver
from proposer.store import MemoryStore
from tests.proposer.search_fakes import run

TASKS = ("a", "b", "own")


def two_runs_pool_scores(weights) -> dict[str, float]:
    """Checkpoints: c0, c1 good at tasks a, b; r1, r2 two noisy runs of one recipe, best on "own".

    A quadratic mixture model (what merges are to second order): mixing r1 and r2 averages
    their noise away (a negative interaction), so a merge of the two near r2 beats r2 on
    every task; anything else that moves away from r2 loses on "own". Random search finds
    neither that nor the small moves that beat c0 and c1.
    """
    w = np.asarray(weights, dtype=float)
    single = np.array([  # rows: checkpoints, columns: tasks (losses)
        [1.0, 2.0, 3.0],
        [2.0, 1.0, 3.0],
        [2.5, 2.5, 2.0],  # r1: the worse run
        [2.5, 2.5, 1.8],  # r2
    ])
    interaction = np.zeros((4, 4, 3))
    interaction[2, 3] = [-0.6, -0.6, -0.3]
    interaction[0, 1] = [-1.5, -1.5, -0.5]  # c0 and c1: beaten by a little of each other
    losses = w @ single + np.einsum("i,j,ijt->t", w, w, interaction)
    return dict(zip(TASKS, losses.tolist()))


def make_spec(**fields) -> SearchSpec:
    pool = PoolSpec(name="pool", checkpoints=tuple(CheckpointRef(name=n, path=f"/ckpt/{n}") for n in ("c0", "c1", "r1", "r2")))
    tasks = tuple(TaskSpec(name=t, kind="lm_loss", path=f"/data/{t}.jsonl") for t in TASKS)
    return SearchSpec(pool=pool, tasks=tasks, **fields)


def evaluate(proposal: Proposal) -> TrialResult:
    return TrialResult(proposal=proposal, status=TrialStatus.ok, scores=two_runs_pool_scores(proposal.weights))


def search(**fields) -> tuple[SearchDriver, list[TrialResult]]:
    spec = make_spec(**fields)
    store = MemoryStore()
    store.create_search("s", spec)
    driver = SearchDriver("s", spec, store)
    run(driver, evaluate, concurrency=2)
    return driver, store.results("s")


def losses(result: TrialResult) -> list[float]:
    return [result.scores[t] for t in TASKS]


def test_the_line_runs_from_the_single_towards_its_neighbour():
    simplex = probe_line(single=3, neighbour=2, dim=4, on_simplex=True)
    assert simplex.point(0.25) == pytest.approx((0.0, 0.0, 0.25, 0.75))
    assert simplex.step_of((0.0, 0.0, 0.25, 0.75)) == pytest.approx(0.25)
    assert simplex.step_of((0.0, 0.0, 1.0, 0.0)) == pytest.approx(1.0)  # the neighbour single
    assert simplex.step_of((0.1, 0.0, 0.2, 0.7)) is None  # off the line
    # Task arithmetic keeps the single whole and adds the neighbour's task vector.
    added = probe_line(single=3, neighbour=2, dim=4, on_simplex=False)
    assert added.point(0.5) == pytest.approx((0.0, 0.0, 0.5, 1.0))
    assert added.step_of((0.0, 0.0, 0.0, 1.0)) == pytest.approx(0.0)
    assert added.step_of((0.0, 0.0, 0.5, 0.5)) is None


def test_the_neighbour_is_the_single_that_trades_off_most_alike():
    singles = {0: [1.0, 2.0, 3.0], 1: [2.0, 1.0, 3.0], 2: [2.5, 2.5, 2.0], 3: [2.5, 2.5, 1.8]}
    assert nearest_neighbour(3, singles) == 2
    assert nearest_neighbour(0, singles) == 1
    assert nearest_neighbour(0, {0: [1.0]}) is None


def test_the_fitted_step_is_where_the_parabolas_beat_the_single_by_most():
    line = probe_line(single=1, neighbour=0, dim=2, on_simplex=True)
    single = [1.0, 1.0]
    # Along the line task 0 is (a - 0.3)^2 + 0.91, task 1 rises linearly from the single's 1.0.
    known = [(a, [(a - 0.3) ** 2 + 0.91, 1.0 + 0.1 * a]) for a in (0.0, 0.5, 1.0)]
    assert next_step(line, single, [1.0, 1.0], known, pending=[]) is None  # task 1 is worse for every a > 0
    known = [(a, [(a - 0.3) ** 2 + 0.91, 1.0 - 0.5 * a]) for a in (0.0, 0.5, 1.0)]
    # Task 1 now falls faster than task 0 wherever task 0 beats the single: task 0 decides, at its minimum.
    assert next_step(line, single, [1.0, 1.0], known, pending=[]) == pytest.approx(0.3)
    assert next_step(line, single, [1.0, 1.0], known, pending=[0.3]) is None  # waits for its result


def test_before_three_points_the_probes_sit_at_the_design_steps_and_stop_after_the_cap():
    added = probe_line(single=0, neighbour=1, dim=2, on_simplex=False)
    first = [(0.0, [1.0, 1.0])]
    assert next_step(added, [1.0, 1.0], [1.0, 1.0], first, []) == 0.5
    assert next_step(added, [1.0, 1.0], [1.0, 1.0], first + [(0.5, [0.9, 0.9])], []) == 0.25
    capped = first + [(a, [0.9, 0.9]) for a in (0.5, 0.25, 0.75)][:MAX_PROBES]
    assert next_step(added, [1.0, 1.0], [1.0, 1.0], capped, []) is None


def test_dominated_singles_are_not_probed():
    singles = {0: [1.0, 2.0], 1: [2.0, 1.0]}
    observed = [((1.0, 0.0), [1.0, 2.0]), ((0.0, 1.0), [2.0, 1.0])]
    assert dominance_probe(singles, [[0.9, 0.9]], observed, [], dim=2, on_simplex=True) is None
    single, weights = dominance_probe(singles, [[1.0, 2.0], [2.0, 1.0]], observed, [], dim=2, on_simplex=True)
    assert (single, weights) == (0, (0.5, 0.5))


def test_the_end_game_dominates_the_singles_a_search_leaves_undominated():
    _, plain = search(strategy="random", budget=24, seed=3)
    _, probed = search(strategy="random", budget=24, seed=3, dominance_probes=6)

    def undominated(results):
        singles = {str(r.proposal.source): losses(r) for r in results if r.proposal.source.kind == "single"}
        others = [losses(r) for r in results]
        return sorted(name for name, point in singles.items() if not any(dominates(p, point) for p in others))

    assert undominated(plain) == ["single:c0", "single:c1", "single:r2"]
    assert undominated(probed) == []
    probes = {}
    for result in sorted(probed, key=lambda r: r.proposal.number):
        if result.proposal.source.kind == "probe":
            probes.setdefault(str(result.proposal.source), []).append(result.proposal.weights)
    # Each c is beaten near itself at the fitted step (the greedy soup gave the 50/50 point on their line).
    assert probes["probe:c0"] == [pytest.approx((0.84, 0.16, 0.0, 0.0))]
    assert probes["probe:c1"] == [pytest.approx((0.16, 0.84, 0.0, 0.0))]
    # r2: the 50/50 soup of the two runs first (it beats r1 only), then the fitted step near r2.
    assert probes["probe:r2"] == [pytest.approx((0.0, 0.0, 0.5, 0.5)), pytest.approx((0.0, 0.0, 0.16, 0.84))]
    assert len(probed) == 24  # the trials the probes did not need went to the strategy


def test_probes_resume_from_the_store_after_a_restart():
    spec = make_spec(strategy="random", budget=20, seed=1, dominance_probes=6)
    store = MemoryStore()
    store.create_search("s", spec)
    events = random.Random(0)  # the same completion order as search()'s
    in_flight = run(SearchDriver("s", spec, store), evaluate, concurrency=2, rng=events, stop_after=16)
    driver = SearchDriver("s", spec, store)  # a restarted proposer
    run(driver, evaluate, concurrency=2, rng=events, in_flight=in_flight)
    _, uninterrupted = search(strategy="random", budget=20, seed=1, dominance_probes=6)
    assert [(r.proposal.source, r.proposal.weights) for r in sorted(store.results("s"), key=lambda r: r.proposal.number)] == [
        (r.proposal.source, r.proposal.weights) for r in sorted(uninterrupted, key=lambda r: r.proposal.number)
    ]
