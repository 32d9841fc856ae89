import statistics
import time

import numpy as np
import pytest

from proposer.strategies import STRATEGIES, CMAESStrategy, TPEStrategy, make_strategy
from proposer.strategies import simplex
from tests.proposer.search_fakes import ask_tell_script

NAMES = sorted(STRATEGIES)
TARGET = np.array([0.4, 0.3, 0.15, 0.1, 0.05])


def toy_loss(weights) -> float:
    """Smooth, minimum 0 at TARGET on the 5-simplex."""
    return float(10.0 * ((np.asarray(weights) - TARGET) ** 2).sum())


def script(strategy, n_trials=30, concurrency=3, seed=0, external=((0, (1.0, 0, 0, 0, 0)),)):
    """Asynchronous ask/tell on toy_loss with a few failures (search_fakes.ask_tell_script)."""
    return ask_tell_script(strategy, toy_loss, lambda number: number % 7 == 3, n_trials, concurrency, seed, external)


def test_unknown_strategy_lists_known_ones():
    with pytest.raises(ValueError, match="cmaes, random, tpe"):
        make_strategy("anneal", 4, 0, True)


def test_nothing_to_search_is_refused():
    with pytest.raises(ValueError):
        make_strategy("tpe", 1, 0, True)
    with pytest.raises(ValueError):
        make_strategy("random", 0, 0, False)
    with pytest.raises(ValueError, match="simplex"):
        make_strategy("tpe", 4, 0, True, 1.5)
    with pytest.raises(ValueError, match=r"\[1, 4\]"):  # CMA-ES would start outside its box
        make_strategy("cmaes", 5, 0, False, 0.15)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("normalize, high", [(True, 1.0), (False, 1.0), (False, 1.5)])
def test_weights_live_in_their_space(name, normalize, high):
    asked, _ = script(make_strategy(name, 5, 0, normalize, high), n_trials=25)
    for _, weights in asked:
        assert len(weights) == 5 and all(isinstance(w, float) for w in weights)
        assert all(0.0 <= w <= high for w in weights)
        if normalize:
            assert sum(weights) == pytest.approx(1.0)
    if not normalize:  # not secretly normalized
        assert any(abs(sum(w) - 1.0) > 0.05 for _, w in asked)
    if high > 1.0 and name != "cmaes":  # their priors cover the whole range (CMA-ES starts at 1/n)
        assert any(w > 1.0 for _, ws in asked for w in ws)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_proposals(name):
    first, _ = script(make_strategy(name, 5, 7, True))
    again, _ = script(make_strategy(name, 5, 7, True))
    other, _ = script(make_strategy(name, 5, 8, True))
    assert first == again
    assert first != other


@pytest.mark.parametrize("name", ["tpe", "random"])
def test_order_of_tells_does_not_matter(name):
    a, b = make_strategy(name, 5, 3, True), make_strategy(name, 5, 3, True)
    asked = a.ask(range(12))
    assert b.ask(range(12)) == asked
    observations = [(n, w, toy_loss(w)) for n, w in enumerate(asked)] + [(12, (0.2,) * 5, toy_loss((0.2,) * 5))]
    for n, w, loss in observations:
        a.tell(n, w, loss)
    for n, w, loss in reversed(observations):
        b.tell(n, w, loss)
    assert a.ask([13, 14]) == b.ask([13, 14])


@pytest.mark.parametrize("name", NAMES)
def test_restore_rebuilds_the_live_strategy(name):
    live = make_strategy(name, 5, 11, True)
    asked, told = script(live, n_trials=40, concurrency=4)
    restored = make_strategy(name, 5, 11, True)
    restored.restore(asked, told)
    if name == "cmaes":  # the replay crossed generations, with over-asking
        assert restored.generation == live.generation >= 3
    assert restored.ask([40, 41, 42]) == live.ask([40, 41, 42])


def test_tpe_beats_random_on_a_smooth_toy():
    def mean_best(name):
        bests = []
        for seed in range(5):
            strategy = make_strategy(name, 5, seed, True)
            best = np.inf
            for number in range(40):
                [weights] = strategy.ask([number])
                loss = toy_loss(weights)
                strategy.tell(number, weights, loss)
                best = min(best, loss)
            bests.append(best)
        return statistics.mean(bests)

    tpe, rand = mean_best("tpe"), mean_best("random")
    print(f"\nmean best loss over 5 seeds at 40 trials: tpe {tpe:.3f}, random {rand:.3f}")
    assert tpe < 0.5 * rand


def test_tpe_knows_pending_and_external_trials():
    tpe = TPEStrategy(4, 0, True)
    asked = tpe.ask([5, 6])
    tpe.tell(0, (1.0, 0.0, 0.0, 0.0), 0.5)  # a baseline it never asked
    tpe.tell(6, asked[1], None)
    docs = {d["tid"]: d for d in tpe.window()}
    assert sorted(docs) == [0, 5, 6]
    assert docs[0]["result"] == {"status": "ok", "loss": 0.5}
    assert simplex.from_sticks([docs[0]["misc"]["vals"][f"u{i}"][0] for i in range(3)]) == (1.0, 0.0, 0.0, 0.0)
    assert docs[5]["result"]["status"] == "new"  # pending: TPE counts it as a bad point
    assert docs[6]["result"]["status"] == "fail"


def test_tpe_window_caps_the_history():
    tpe = TPEStrategy(16, 0, True)
    rng = np.random.default_rng(0)
    losses = rng.random(1000)
    for number, loss in enumerate(losses):  # told like baselines: quicker than 1000 asks
        tpe.tell(number, tuple(rng.dirichlet(np.ones(16))), float(loss))
    tpe.ask([1000, 1001])
    window = tpe.window()
    assert len(window) <= tpe.window_best + tpe.window_recent + 2
    seen = sorted(d["result"]["loss"] for d in window if d["result"]["status"] == "ok")
    assert seen[: tpe.window_best] == sorted(losses)[: tpe.window_best]  # the best are all kept
    assert {1000, 1001} <= {d["tid"] for d in window}  # and the pending ones

    def latency(strategy, first):
        times = []
        for number in range(first, first + 5):
            start = time.perf_counter()
            strategy.ask([number])
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)

    windowed = latency(tpe, 2000)
    tpe.window_best = tpe.window_recent = 10**6
    full = latency(tpe, 3000)
    print(f"\nTPE ask at 1000 told trials, 16 weights: windowed {windowed:.1f} ms, whole history {full:.1f} ms")


def test_cmaes_keeps_asking_past_a_generation():
    cma = CMAESStrategy(4, 0, True)
    size = cma.population_size
    asked = cma.ask(range(size + 3))  # workers stay busy past one population
    assert len(set(asked)) == size + 3 and cma.generation == 0
    cma.tell(100, (0.25,) * 4, 0.0)  # a baseline: ignored
    cma.tell(size + 2, asked[size + 2], None)  # a failure: does not count
    for number in reversed(range(size)):
        assert cma.generation == 0
        cma.tell(number, asked[number], float(number))
    assert cma.generation == 1
    cma.tell(size, asked[size], 0.0)  # late result of generation 0: ignored
    later = cma.ask(range(size + 3, 2 * size + 3))
    for i, number in enumerate(range(size + 3, 2 * size + 3)):
        cma.tell(number, later[i], 1.0)
    assert cma.generation == 2


def test_cmaes_restore_refuses_foreign_proposals():
    cma = CMAESStrategy(4, 0, True)
    with pytest.raises(ValueError, match="not a CMA-ES sample"):
        cma.restore([(0, (0.25,) * 4)], [])


def test_stick_breaking_round_trips_and_is_uniform():
    rng = np.random.default_rng(0)
    u = rng.random(5)
    assert simplex.to_sticks(simplex.from_sticks(u)) == pytest.approx(u)
    mean = np.mean([simplex.from_sticks(rng.random(5)) for _ in range(4000)], axis=0)
    assert mean == pytest.approx([1 / 6] * 6, abs=0.01)
    assert simplex.from_ilr([0.0, 0.0]) == pytest.approx((1 / 3,) * 3)  # CMA-ES's start: the uniform soup
