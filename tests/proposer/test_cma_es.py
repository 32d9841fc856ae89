"""CMA-ES: unbiased simplex coordinates, and the surrogate used as lq-CMA-ES uses it."""

from __future__ import annotations

import numpy as np
import pytest

from proposer.sources import Prescreened, sources_for
from proposer.space import WeightSpace
from proposer.strategies import CMAESStrategy, simplex
from proposer.strategies.cma_es import TAU_THRESHOLD
from tests.proposer.search_fakes import ask_tell_script, make_spec

TARGET = np.array([0.4, 0.3, 0.15, 0.1, 0.05])


def loss(weights) -> float:
    w = np.asarray(weights)
    return float(10.0 * ((w - TARGET) ** 2).sum() + np.sqrt(w[0] + 0.01))  # not quadratic


def run(strategy, n_trials=70, concurrency=4, seed=0):
    """Baselines told first (singles, uniform), then asynchronous asks and tells; returns what a
    store would hold: the asks and the tells in order."""
    n = strategy.n_weights
    baselines = [tuple(np.eye(n)[i]) for i in range(n)] + [(1.0 / n,) * n]
    return ask_tell_script(strategy, loss, lambda number: number % 13 == 5, n_trials, concurrency, seed,
                           list(enumerate(baselines)))


@pytest.mark.parametrize("n", [9, 17])
def test_no_checkpoint_is_favoured_by_the_initial_distribution(n):
    cma = CMAESStrategy(n, 0, True)
    weights = np.array(cma.ask(range(3000)))  # no tells: every ask samples the first distribution
    assert cma.generation == 0
    mean, se = weights.mean(axis=0), weights.std(axis=0) / np.sqrt(len(weights))
    assert np.abs(mean - 1.0 / n).max() < 4 * se.max(), mean
    # The additive log-ratios softmax([z, 0]) gave the last checkpoint 0.082 instead of 1/9.
    dense = (weights > 0.01).all(axis=1).mean()
    assert dense < 0.6 if n == 9 else dense < 0.1  # not almost all dense (sigma 1 on ALR: 0.83 for 9)


def test_isometric_log_ratios_round_trip_and_start_at_the_uniform_soup():
    z = np.random.default_rng(0).normal(size=6)
    assert simplex.to_ilr(simplex.from_ilr(z)) == pytest.approx(z)
    assert simplex.from_ilr(np.zeros(4)) == pytest.approx((0.2,) * 5)
    basis = simplex.helmert_basis(7)
    assert basis.T @ basis == pytest.approx(np.eye(6)) and np.abs(basis.sum(axis=0)).max() < 1e-12


def test_cmaes_is_told_whole_populations_of_what_it_sampled(monkeypatch):
    cma = CMAESStrategy(5, 1, True, surrogate=True)
    told, drawn = [], {}
    original_ask, original_tell = cma._cma.ask, cma._cma.tell

    def ask():
        x = original_ask()
        drawn.setdefault(cma.generation, []).append(x)
        return x

    def tell(solutions):
        # On the rank test: fewer results back than the population (the model's values for all).
        told.append((cma.generation, solutions, len(cma._returned) < cma.population_size))
        original_tell(solutions)

    monkeypatch.setattr(cma._cma, "ask", ask)
    monkeypatch.setattr(cma._cma, "tell", tell)
    run(cma)
    assert len(told) >= 4
    for generation, solutions, on_the_model in told:
        assert len(solutions) == cma.population_size
        samples = drawn[generation][: cma.population_size] if on_the_model else drawn[generation]
        for x, _ in solutions:
            assert any(np.array_equal(x, y) for y in samples)  # a sample of that generation
    assert any(on_the_model for _, _, on_the_model in told)
    assert max(t for _, t in cma.tau_history) >= TAU_THRESHOLD


def test_the_surrogate_ranks_the_population():
    cma = CMAESStrategy(5, 2, True, surrogate=True)
    run(cma, n_trials=30)
    model = cma._fitted()
    population = [cma._weights(cma._member(j)) for j in range(cma.population_size)]
    predicted = model.predict(np.array(population))[:, 0]
    free = [j for j in range(cma.population_size) if j not in cma._taken]
    [weights] = cma.sample(99)
    assert free and weights == population[min(free, key=lambda j: predicted[j])]


@pytest.mark.parametrize("surrogate", [False, True])
def test_restore_rebuilds_generations_rank_tests_and_the_next_asks(surrogate):
    live = CMAESStrategy(5, 11, True, surrogate=surrogate)
    asked, told = run(live, n_trials=80)
    restored = CMAESStrategy(5, 11, True, surrogate=surrogate)
    restored.restore(asked, told)
    assert restored.generation == live.generation >= 4
    assert restored.tau_history == live.tau_history
    assert restored.ask([80, 81, 82]) == live.ask([80, 81, 82])


def test_a_search_with_cmaes_and_the_surrogate_is_not_prescreened():
    spec = make_spec(4, strategy="cmaes")
    space = WeightSpace(spec)
    strategy = CMAESStrategy(space.dim, 0, space.normalize, surrogate=spec.surrogate)
    assert strategy.surrogate and not any(isinstance(s, Prescreened) for s in sources_for(spec, space, strategy))
