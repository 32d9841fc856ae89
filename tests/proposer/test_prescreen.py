"""The quadratic surrogate and the hypervolume pre-screening of strategy candidates."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from contracts import CheckpointRef, PoolSpec, Proposal, SearchSpec, TaskSpec, TrialResult, TrialStatus
from proposer import MemoryStore, ParetoArchive, SearchDriver
from proposer.pareto import hypervolume, non_dominated
from proposer.prescreen import REFERENCE, HypervolumePrescreen, confidence_gain, improvement
from proposer.baselines import fixed_baselines
from proposer.space import WeightSpace
from proposer.surrogate import MAX_WEIGHTS, QuadraticSurrogate

RNG = np.random.default_rng(0)


def quadratic_tasks(x: np.ndarray, optima: np.ndarray) -> np.ndarray:
    """Task t's loss 1 + 3 ||w - w*_t||^2: quadratic in the weights, conflicting optima."""
    return np.stack([1.0 + 3.0 * ((x - w) ** 2).sum(axis=1) for w in optima], axis=1)


def test_surrogate_is_exact_on_quadratics_of_simplex_weights():
    optima = RNG.dirichlet(np.ones(6), size=3)
    x = RNG.dirichlet(np.ones(6), size=60)
    surrogate = QuadraticSurrogate(x, quadratic_tasks(x, optima), on_simplex=True)
    test = RNG.dirichlet(np.ones(6), size=20)
    assert np.abs(surrogate.predict(test) - quadratic_tasks(test, optima)).max() < 1e-2
    # Unnormalized weights given: the model normalizes them onto the simplex first.
    assert np.allclose(surrogate.predict(3 * test), surrogate.predict(test))


def test_surrogate_is_exact_on_general_quadratics_without_the_simplex():
    x = RNG.random((80, 4))
    y = (x**2).sum(axis=1, keepdims=True) - x[:, :1] * x[:, 1:2] + 0.5
    surrogate = QuadraticSurrogate(x, y, on_simplex=False)
    test = RNG.random((10, 4))
    expected = (test**2).sum(axis=1, keepdims=True) - test[:, :1] * test[:, 1:2] + 0.5
    assert np.abs(surrogate.predict(test) - expected).max() < 1e-3


def test_leave_one_out_shrinks_noise_towards_linear_blending():
    x = RNG.dirichlet(np.ones(5), size=40)
    linear = x @ np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    noisy = QuadraticSurrogate(x, (linear + RNG.normal(0, 0.3, 40))[:, None], on_simplex=True)
    clean = QuadraticSurrogate(x, quadratic_tasks(x, RNG.dirichlet(np.ones(5), size=1)), on_simplex=True)
    assert noisy.alphas[0] > clean.alphas[0]
    # With fewer trials than coefficients (15 here) the fit still stands.
    few = QuadraticSurrogate(x[:8], linear[:8, None], on_simplex=True)
    assert np.isfinite(few.predict(x)).all()


def test_surrogate_refuses_bad_shapes_and_too_many_weights():
    with pytest.raises(ValueError, match="one row of scores"):
        QuadraticSurrogate(np.ones((3, 2)), np.ones((2, 1)), on_simplex=True)
    with pytest.raises(ValueError, match=f"at most {MAX_WEIGHTS}"):
        QuadraticSurrogate(np.ones((3, MAX_WEIGHTS + 1)), np.ones((3, 1)), on_simplex=True)


def test_non_dominated_matches_the_definition():
    points = RNG.random((200, 3))
    mask = non_dominated(points)
    for i, p in enumerate(points):
        dominated = any(np.all(q <= p) and np.any(q < p) for q in points)
        assert mask[i] == (not dominated)


def test_improvement_is_the_hypervolume_added_or_minus_the_distance_to_the_front():
    front = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    reference = [REFERENCE, REFERENCE]
    gap = np.array([0.2, 0.2])
    added = hypervolume(front.tolist() + [gap.tolist()], reference) - hypervolume(front.tolist(), reference)
    assert improvement(gap, front) == pytest.approx(added) and added > 0
    # Dominated by (0.5, 0.5): it must improve by 0.1 on both objectives to escape it.
    assert improvement(np.array([0.6, 0.7]), front) == pytest.approx(-0.1)
    assert improvement(np.array([2.0, -1.0]), front) == 0.0  # outside the reference box


def observations(optima: np.ndarray, n: int) -> list[tuple[tuple[float, ...], list[float]]]:
    x = RNG.dirichlet(np.ones(optima.shape[1]), size=n)
    return [(tuple(w), list(y)) for w, y in zip(x, quadratic_tasks(x, optima))]


def test_the_pick_is_the_candidate_predicted_to_add_most_hypervolume():
    optima = np.eye(4)[:2] * 0.7 + 0.075  # two tasks, best near c0 and near c1
    observed = observations(optima, 30)
    screen = HypervolumePrescreen(observed, [], on_simplex=True)
    candidates = [tuple(w) for w in RNG.dirichlet(np.ones(4), size=16)] + [tuple(optima[0])]
    assert screen.pick(candidates) == len(candidates) - 1  # a task's own optimum extends the front most
    # Once that point is pending, its predicted mean counts as known: the same gap adds only what
    # its confidence bound reaches beyond that mean.
    busy = HypervolumePrescreen(observed, [tuple(optima[0])], on_simplex=True)
    assert busy.scores([tuple(optima[0])])[0] < 0.05 * screen.scores([tuple(optima[0])])[0]


def test_the_score_is_the_hypervolume_its_lower_confidence_bound_adds():
    optima = np.eye(4)[:2] * 0.7 + 0.075
    # Trials on one face of the simplex (no weight on c3): the model knows little off it.
    x = np.hstack([RNG.dirichlet(np.ones(3), size=30), np.zeros((30, 1))])
    observed = [(tuple(w), list(y)) for w, y in zip(x, quadratic_tasks(x, optima))]
    screen = HypervolumePrescreen(observed, [], on_simplex=True)
    on_face, off_face = (0.4, 0.3, 0.3, 0.0), (0.1, 0.1, 0.1, 0.7)
    mean, sd = screen.surrogate.predict(np.array([on_face, off_face])), screen.surrogate.predict_sd(np.array([on_face, off_face]))
    assert sd[1].min() > 10 * sd[0].max()  # far from every trial the model is unsure
    bound = mean - confidence_gain(2) * sd
    assert screen.scores([on_face, off_face]) == pytest.approx([improvement(b, screen.front) for b in bound])
    assert confidence_gain(2) == pytest.approx(0.5449, abs=1e-4)  # Phi(gain)^2 = 1/2


def test_with_too_few_trials_or_too_many_weights_the_strategy_keeps_its_choice():
    optima = RNG.dirichlet(np.ones(4), size=2)
    few = HypervolumePrescreen(observations(optima, 5), [], on_simplex=True)
    assert few.pick([(1, 0, 0, 0), (0, 1, 0, 0)]) == 0
    wide = RNG.dirichlet(np.ones(MAX_WEIGHTS + 1), size=2)
    many = HypervolumePrescreen(observations(wide, 60), [], on_simplex=True)
    assert many.surrogate is None and many.pick([tuple(wide[1]), tuple(wide[0])]) == 0


# -- the whole search: does pre-screening buy hypervolume? ----------------------------


def synthetic_search(strategy: str, seed: int, surrogate: bool, budget: int = 40, candidates: int | None = None) -> float:
    """Hypervolume gain over the baselines on 3 conflicting quadratic tasks over 6 checkpoints."""
    optima = np.random.default_rng(1234).dirichlet(np.full(6, 0.5), size=3)
    pool = PoolSpec(name="p", checkpoints=tuple(CheckpointRef(name=f"c{i}", path=f"/c{i}") for i in range(6)))
    tasks = tuple(TaskSpec(name=f"t{t}", kind="lm_loss", path="/t") for t in range(3))
    spec = SearchSpec(pool=pool, tasks=tasks, strategy=strategy, budget=budget, concurrency=3, seed=seed,
                      surrogate=surrogate, candidates=candidates)
    store = MemoryStore()
    store.create_search("s", spec)
    driver = SearchDriver("s", spec, store)
    in_flight: list[Proposal] = []
    order = np.random.default_rng(seed)
    while not driver.finished:
        in_flight += driver.propose(3 - len(in_flight))
        proposal = in_flight.pop(int(order.integers(len(in_flight))))
        losses = quadratic_tasks(np.array([proposal.weights]), optima)[0]
        scores = {task.name: float(v) for task, v in zip(tasks, losses)}
        driver.record(TrialResult(proposal=proposal, status=TrialStatus.ok, scores=scores))
    summary = driver.summary()
    baselines = ParetoArchive(spec.objectives)
    for result in store.results("s"):
        if result.proposal.number < len(fixed_baselines(WeightSpace(spec), spec.shrunk_singles)):
            baselines.add(result)
    return summary["hypervolume"] - baselines.hypervolume(summary["reference_point"], driver.normalization.losses)


@pytest.mark.parametrize("strategy, candidates", [("tpe", None), ("random", 16)])
def test_prescreened_strategies_beat_random_search_on_the_front(strategy, candidates):
    seeds = range(3)
    random_gain = statistics.fmean(synthetic_search("random", s, surrogate=True) for s in seeds)
    screened = statistics.fmean(synthetic_search(strategy, s, True, candidates=candidates) for s in seeds)
    unscreened = statistics.fmean(synthetic_search(strategy, s, False, candidates=candidates) for s in seeds)
    assert screened > 1.15 * random_gain
    assert screened > unscreened


def test_random_search_ignores_the_surrogate():
    assert synthetic_search("random", 0, surrogate=True) == synthetic_search("random", 0, surrogate=False)


def test_the_front_with_pending_points_is_the_non_dominated_set_of_both():
    from proposer.prescreen import with_points

    points = RNG.random((300, 3))
    front, extra = points[non_dominated(points)], RNG.random((6, 3)) * 0.8
    both = np.vstack([front, extra])
    expected = both[non_dominated(both)]
    got = with_points(front, extra)
    assert sorted(map(tuple, got)) == sorted(map(tuple, expected))
