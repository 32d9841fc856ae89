"""The normalized scale: tasks in different units weigh equally, and two searches on one pool share it."""

import pytest

from contracts import Direction, Objective
from proposer.normalize import REFERENCE, Normalization, normalization_of
from tests.proposer.search_fakes import failed, make_spec, ok
from proposer.search import SearchDriver, summarize_search
from proposer.store import MemoryStore

NLL = Objective(name="nll", direction=Direction.minimize)
ACC = Objective(name="acc", direction=Direction.maximize)


def new_driver(spec):
    store = MemoryStore()
    store.create_search("s", spec)
    return SearchDriver("s", spec, store)


def results_with(spec, scores):
    driver = new_driver(spec)
    proposals = driver.propose(len(scores))
    return [ok(p, s) if s else failed(p) for p, s in zip(proposals, scores)]


def test_zero_is_the_best_single_and_one_the_worst_on_each_task_whatever_its_unit():
    spec = make_spec(3, budget=10, strategy="random")
    singles = [{"nll": 4.0, "acc": 0.40}, {"nll": 4.5, "acc": 0.60}, {"nll": 5.0, "acc": 0.50}]
    scale = normalization_of(spec, results_with(spec, singles))
    assert scale.losses({"nll": 4.0, "acc": 0.40}) == pytest.approx([0.0, 1.0])
    assert scale.losses({"nll": 5.0, "acc": 0.60}) == pytest.approx([1.0, 0.0])
    # A merge halfway on both: 0.5 each, where the raw mean would be all nats and no accuracy.
    assert scale.macro({"nll": 4.5, "acc": 0.5}) == pytest.approx(0.5)
    assert scale.macro({"nll": 4.5, "acc": 0.6}) < scale.macro({"nll": 4.5, "acc": 0.5})
    # The macro is linear in the raw scores with these weights (the verdict's statistics use them).
    weights = scale.task_weights()
    assert weights == pytest.approx([1 / (2 * 1.0), -1 / (2 * 0.2)])
    assert scale.reference == [REFERENCE, REFERENCE]


def test_the_scale_waits_for_every_single_and_ignores_failed_ones():
    spec = make_spec(3, budget=10, strategy="random")
    assert normalization_of(spec, results_with(spec, [{"nll": 4.0, "acc": 0.4}, {"nll": 5.0, "acc": 0.5}])) is None
    scale = normalization_of(spec, results_with(spec, [{"nll": 4.0, "acc": 0.4}, None, {"nll": 5.0, "acc": 0.5}]))
    assert scale.ideal == pytest.approx((4.0, -0.5)) and scale.scale == pytest.approx((1.0, 0.1))
    assert len(scale.anchors) == 2
    # Every single failed: no scale, no hypervolume, no best.
    assert normalization_of(spec, results_with(spec, [None, None, None])) is None


def test_a_task_on_which_every_single_scored_the_same_is_shifted_not_scaled():
    scale = Normalization.from_anchors([NLL, ACC], results_with(make_spec(2), [{"nll": 4.0, "acc": 0.5}] * 2))
    assert scale.scale == (1.0, 1.0)
    assert scale.losses({"nll": 3.5, "acc": 0.5}) == pytest.approx([-0.5, 0.0])


def test_two_searches_on_one_pool_share_the_scale_and_their_hypervolumes_compare():
    summaries = []
    for strategy, seed in (("random", 1), ("tpe", 2)):
        spec = make_spec(3, budget=16, strategy=strategy, seed=seed)
        driver = new_driver(spec)
        while not driver.finished:
            for p in driver.propose(2):
                driver.record(ok(p))
        summaries.append(summarize_search(spec, driver.store.proposals("s"), driver.store.results("s")))
    assert summaries[0]["normalization"] == summaries[1]["normalization"]
    assert summaries[0]["reference_point"] == [REFERENCE] * 2
    assert all(0 < s["hypervolume"] <= REFERENCE**2 for s in summaries)
