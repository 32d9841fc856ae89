import random

import pytest

from contracts import Proposal
from proposer.baselines import greedy_candidate
from proposer.normalize import REFERENCE, Normalization
from proposer.search import SearchDriver, best_by_macro
from proposer.store import MemoryStore
from tests.proposer.search_fakes import failed, make_spec, ok, run


def driver_for(spec, store=None, **kwargs) -> SearchDriver:
    if store is None:
        store = MemoryStore()
        store.create_search("s1", spec)
    return SearchDriver("s1", spec, store, **kwargs)


def with_loss(proposal: Proposal, loss: float):
    """A result whose macro-average is `loss`: ((2 * loss) - 0) / 2."""
    return ok(proposal, scores={"nll": 2.0 * loss, "acc": 0.0})


def test_baselines_come_first():
    driver = driver_for(make_spec(3, budget=10))
    proposals = driver.propose(5)
    assert [str(p.source) for p in proposals] == ["single:c0", "single:c1", "single:c2", "uniform", "tpe"]
    assert [p.weights for p in proposals[:4]] == [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1 / 3,) * 3]
    assert [p.number for p in proposals] == [0, 1, 2, 3, 4]
    assert [p.trial_id for p in proposals] == [Proposal.make_trial_id("s1", n) for n in range(5)]
    assert driver.store.proposals("s1") == proposals
    assert driver.in_flight == 5


def test_without_baselines_the_strategy_starts():
    driver = driver_for(make_spec(3, budget=10, baselines=False, strategy="random"))
    run(driver)
    assert {p.source.kind for p in driver.store.proposals("s1")} == {"random"}


def test_greedy_candidate_by_hand():
    singles = [0.3, 0.1, 0.4, 0.2]  # best first: 1, 3, 0, 2
    assert greedy_candidate(singles, []) == (1, 3)
    assert greedy_candidate(singles, [0.05]) == (0, 1, 3)  # {1, 3} was kept
    assert greedy_candidate(singles, [0.05, 0.08]) == (1, 2, 3)  # 0 was not
    assert greedy_candidate(singles, [0.05, 0.08, 0.04]) is None
    assert greedy_candidate([0.3, None, 0.4, 0.2], []) == (0, 3)  # a failed single is left out
    assert greedy_candidate([0.3, None, 0.4, 0.2], [None]) == (2, 3)  # so is a failed step
    assert greedy_candidate([None, 0.2], []) is None


def test_greedy_soup_steps_wait_for_their_predecessor():
    baseline_losses = {
        "single:c0": 0.3, "single:c1": 0.1, "single:c2": 0.4, "single:c3": 0.2, "uniform": 0.5,
    }
    greedy_losses = {(0, 1, 0, 1): 0.05, (1, 1, 0, 1): 0.08, (0, 1, 1, 1): 0.04}

    def evaluate(p):
        if p.source.kind == "greedy":
            return with_loss(p, greedy_losses[tuple(int(w > 0) for w in p.weights)])
        return with_loss(p, baseline_losses.get(str(p.source), 1.0))

    driver = driver_for(make_spec(4, budget=20, strategy="random"))
    in_flight = []
    while True:
        in_flight += driver.propose(3 - len(in_flight))
        assert sum(p.source.kind == "greedy" for p in in_flight) <= 1
        if not in_flight:
            break
        driver.record(evaluate(in_flight.pop(0)))
    proposals = driver.store.proposals("s1")
    greedy = [p for p in proposals if p.source.kind == "greedy"]
    assert [p.weights for p in greedy] == [(0, 0.5, 0, 0.5), (1 / 3, 1 / 3, 0, 1 / 3), (0, 1 / 3, 1 / 3, 1 / 3)]
    between = [str(p.source) for p in proposals if greedy[0].number < p.number < greedy[-1].number]
    assert "random" in between  # the strategy kept the workers busy meanwhile
    assert driver.summary()["best"]["source"] == "greedy"


def test_budget_is_never_exceeded():
    driver = driver_for(make_spec(4, budget=3))
    assert [str(p.source) for p in driver.propose(100)] == ["single:c0", "single:c1", "single:c2"]
    assert driver.propose(1) == []
    driver = driver_for(make_spec(4, budget=12, strategy="cmaes"))
    run(driver, concurrency=5)
    assert len(driver.store.proposals("s1")) == 12 and driver.propose(5) == []
    assert driver.finished and driver.in_flight == 0


def test_a_duplicate_result_counts_once():
    driver = driver_for(make_spec(3, budget=10))
    told = []
    tell = driver.strategy.tell
    driver.strategy.tell = lambda *args: (told.append(args[0]), tell(*args))
    proposal, *others = driver.propose(3)  # the singles: told once all are back (they set the scale)
    assert driver.record(ok(proposal))
    assert not driver.record(ok(proposal))
    assert not driver.record(failed(proposal))  # a redelivery that failed later changes nothing
    for other in others:
        driver.record(ok(other))
    assert not driver.record(ok(proposal))
    assert told == [0, 1, 2]
    assert driver.summary()["done"] == 3 and driver.summary()["failed"] == 0
    assert driver.store.results("s1")[0] == ok(proposal)  # the first result stays


def test_a_result_stored_by_someone_else_is_still_taken_in():
    driver = driver_for(make_spec(3, budget=10))
    [proposal] = driver.propose(1)
    driver.store.record_result(ok(proposal))  # e.g. by the worker itself
    assert driver.record(ok(proposal))
    assert not driver.record(ok(proposal))
    assert driver.summary()["done"] == 1


def test_bad_results_are_refused_and_change_nothing():
    driver = driver_for(make_spec(3, budget=10))
    [proposal] = driver.propose(1)
    stranger = proposal.model_copy(update={"number": 5, "trial_id": "s1-t000005"})
    altered = proposal.model_copy(update={"weights": (0.0, 1.0, 0.0)})
    other_search = proposal.model_copy(update={"search_id": "s2"})
    for bad in [ok(stranger), ok(altered), ok(other_search), ok(proposal, scores={"nll": 1.0})]:
        with pytest.raises(ValueError):
            driver.record(bad)
    assert driver.store.results("s1") == [] and driver.in_flight == 1


def run_in_one_go(spec, evaluate):
    driver = driver_for(spec)
    run(driver, evaluate, rng=random.Random(1))
    return driver


@pytest.mark.parametrize(
    "strategy, base, max_weight, candidates",
    [
        ("tpe", None, 1.0, None),
        ("cmaes", None, 1.0, None),
        ("cmaes", "c0", 1.0, None),  # task arithmetic
        ("tpe", "c0", 1.3, None),  # task arithmetic, extrapolating (1.3: not a power of two)
        ("cmaes", "c0", 1.3, None),
        ("random", None, 1.0, None),
        ("random", None, 1.0, 8),  # random candidates, pre-screened
        ("cmaes", None, 1.0, 5),
    ],
)
def test_a_restarted_driver_carries_on_exactly(strategy, base, max_weight, candidates):
    spec = make_spec(4, strategy=strategy, budget=40, concurrency=3, max_weight=max_weight, candidates=candidates,
                     **({"base": base} if base else {}))

    def evaluate(p):  # a few failures, to replay those too
        return failed(p) if p.number % 9 == 7 else ok(p)

    reference = run_in_one_go(spec, evaluate)
    for stop_after in (9, 23):
        store = MemoryStore()
        store.create_search("s1", spec)
        rng = random.Random(1)
        in_flight = run(driver_for(spec, store), evaluate, rng=rng, stop_after=stop_after)
        restarted = driver_for(spec, store)
        assert restarted.in_flight == len(in_flight)
        run(restarted, evaluate, rng=rng, in_flight=in_flight)
        assert store.proposals("s1") == reference.store.proposals("s1")
        assert restarted.summary() == reference.summary()
    if strategy == "cmaes":
        assert reference.strategy.generation >= 2


def test_summary_reports_best_front_and_hypervolume():
    def evaluate(p):
        result = ok(p)
        return result.model_copy(update={"report": {k: v + 0.1 for k, v in result.scores.items()}})

    driver = driver_for(make_spec(4, budget=24))
    run(driver, evaluate)
    summary = driver.summary()
    results = driver.store.results("s1")
    singles = sorted(results, key=lambda r: r.proposal.number)[:4]
    assert driver.normalization == Normalization.from_anchors(driver.objectives, singles)
    assert summary["reference_point"] == [REFERENCE, REFERENCE]
    best = best_by_macro(results, driver.normalization)
    assert summary["best"]["trial_id"] == best.trial_id
    assert summary["best"]["weights"] == list(best.proposal.weights)
    assert summary["best"]["report_macro_average"] == pytest.approx(driver.normalization.macro(best.report))
    assert summary["hypervolume"] > 0
    assert set(summary["front"]) <= {r.trial_id for r in results}
    assert {k: summary[k] for k in ("proposed", "done", "failed", "in_flight")} == {
        "proposed": 24, "done": 24, "failed": 0, "in_flight": 0,
    }


def test_the_scale_is_fixed_once_the_singles_are_back_and_the_strategy_waits_for_it():
    driver = driver_for(make_spec(3, budget=20, strategy="random"))
    told = []
    tell = driver.strategy.tell
    driver.strategy.tell = lambda *args: (told.append(args), tell(*args))
    proposals = driver.propose(5)  # three singles, the uniform soup, a strategy proposal
    driver.record(ok(proposals[4]))
    driver.record(ok(proposals[0]))
    driver.record(failed(proposals[1]))
    assert driver.normalization is None and driver.summary()["hypervolume"] is None
    assert told == []  # no scale yet: nothing told
    driver.record(ok(proposals[2]))
    fixed = driver.normalization
    assert fixed == Normalization.from_anchors(driver.objectives, [ok(proposals[0]), ok(proposals[2])])
    # Told in the order the results came, each with its normalized macro-average.
    assert [n for n, _, _ in told] == [4, 0, 1, 2]
    assert told[0][2] == pytest.approx(fixed.macro(ok(proposals[4]).scores)) and told[2][2] is None
    run(driver)
    assert driver.normalization == fixed


def test_task_arithmetic_baselines_and_proposals():
    driver = driver_for(make_spec(4, base="c0", strategy="random", budget=20))
    run(driver)
    proposals = driver.store.proposals("s1")
    assert [(str(p.source), p.weights) for p in proposals[:5]] == [
        ("single:c0", (0.0, 0.0, 0.0, 0.0)),  # the base model
        ("single:c1", (0.0, 1.0, 0.0, 0.0)),
        ("single:c2", (0.0, 0.0, 1.0, 0.0)),
        ("single:c3", (0.0, 0.0, 0.0, 1.0)),
        ("uniform", (0.0, 1 / 3, 1 / 3, 1 / 3)),
    ]
    searched = [p for p in proposals if p.source.kind == "random"]
    assert all(p.weights[0] == 0.0 and all(0 <= w <= 1 for w in p.weights) for p in searched)
    assert any(abs(sum(p.weights) - 1) > 0.05 for p in searched)  # unnormalized
    assert all(p.weights[0] == 0.0 for p in proposals if p.source.kind == "greedy")


@pytest.mark.parametrize("strategy", ["tpe", "cmaes", "random"])
def test_task_arithmetic_extrapolates_up_to_max_weight(strategy):
    driver = driver_for(make_spec(4, base="c0", strategy=strategy, budget=40, max_weight=1.5))
    run(driver)
    searched = [p.weights for p in driver.store.proposals("s1") if p.source.kind == strategy]
    assert searched and all(w[0] == 0.0 and all(0.0 <= x <= 1.5 for x in w) for w in searched)
    if strategy != "cmaes":  # their priors cover the range; CMA-ES moves from 1/n only where the loss leads
        assert any(x > 1.0 for w in searched for x in w)


def test_max_weight_is_refused_on_the_simplex():
    with pytest.raises(ValueError, match="max_weight"):
        make_spec(4, max_weight=1.5)
    with pytest.raises(ValueError):
        make_spec(4, base="c0", max_weight=0.5)  # the singles would lie outside the box


def test_failures_are_counted_and_searched_past():
    driver = driver_for(make_spec(3, budget=15, strategy="cmaes"))
    run(driver, lambda p: failed(p) if p.number % 3 == 0 else ok(p))
    summary = driver.summary()
    assert driver.finished and summary["failed"] == 5 and summary["done"] == 10


def test_best_by_macro_per_split():
    driver = driver_for(make_spec(3, budget=10))
    p0, p1, p2, p3 = driver.propose(4)
    results = [
        with_loss(p0, 1.0).model_copy(update={"report": {"nll": 2.0, "acc": 0.0}}),
        with_loss(p1, 0.5),  # best on the search split, no report
        failed(p2),
        with_loss(p3, 0.5),  # tie: the first one wins
    ]
    scale = Normalization(tuple(driver.objectives), (0.0, 0.0), (1.0, 1.0))
    assert best_by_macro(results, scale) is results[1]
    assert best_by_macro(results, scale, split="report") is results[0]
    assert best_by_macro([failed(p2)], scale) is None
    assert best_by_macro(results, None) is None  # no scale yet


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError):
        driver_for(make_spec(1))  # one checkpoint: nothing to merge
