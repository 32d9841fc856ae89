"""Proposal sources and the typed records they produce: Source, grouped SearchOptions, and
the history older searches left in Redis and search.yaml files."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from contracts import Proposal, SearchSpec, Source
from proposer import MemoryStore, SearchDriver
from proposer.sources import DominanceProbes, FixedBaselines, GreedySoup, Prescreened, StrategySource
from tests.proposer.search_fakes import make_spec, run

OLD_TEXT = ["single:c0", "shrunk:c1", "probe:c2", "greedy", "uniform", "tpe", "cmaes", "random"]


@pytest.mark.parametrize("text", OLD_TEXT)
def test_sources_stored_as_text_still_load_and_read_back_the_same(text):
    stored = {"search_id": "s", "trial_id": "s-t000001", "number": 1, "weights": [1.0, 0.0], "source": text}
    proposal = Proposal.model_validate(stored)
    kind, _, checkpoint = text.partition(":")
    assert (proposal.source.kind, proposal.source.checkpoint) == (kind, checkpoint or None)
    assert str(proposal.source) == text
    again = Proposal.model_validate_json(proposal.model_dump_json())
    assert again == proposal and proposal.model_dump()["source"] == {"kind": kind, "checkpoint": checkpoint or None}


@pytest.mark.parametrize("bad", ["single", "greedy:c0", "tpe:c0", "anneal", "single:bad name", ""])
def test_malformed_sources_are_refused(bad):
    with pytest.raises(ValidationError):
        Source.model_validate(bad)


def test_baseline_kinds():
    assert [Source.model_validate(t).is_baseline for t in OLD_TEXT] == [True, True, False, True, True, False, False, False]


FLAT_YAML = """
tasks:
  - {name: nll, kind: lm_loss, path: /data/nll.jsonl}
strategy: cmaes
budget: 12
concurrency: 3
seed: 4
merge: {normalize: false, base: c0}
max_weight: 1.5
dominance_probes: 2
report_every_trial: false
"""


def test_flat_specs_of_before_the_grouping_still_load_into_their_groups():
    flat = yaml.safe_load(FLAT_YAML) | {"pool": make_spec(3).pool.model_dump()}
    spec = SearchSpec.model_validate(flat)
    assert spec.algorithm.strategy == "cmaes" and spec.algorithm.seed == 4 and spec.algorithm.dominance_probes == 2
    assert spec.runtime.budget == 12 and spec.runtime.concurrency == 3 and spec.runtime.report_every_trial is False
    assert spec.problem.merge.base == "c0" and spec.problem.max_weight == 1.5
    assert (spec.strategy, spec.budget, spec.max_weight) == ("cmaes", 12, 1.5)  # flat names still read
    grouped = spec.model_dump()
    assert set(grouped) == {"pool", "problem", "algorithm", "runtime"}
    assert SearchSpec.model_validate(grouped) == spec == SearchSpec.model_validate_json(spec.model_dump_json())
    assert spec.model_copy(update={"budget": 20, "dominance_probes": 0}).runtime.budget == 20


def test_searches_stored_with_a_retired_option_still_load_without_it():
    """exploit_every (a cadence of exploiting asks) was replaced by the surrogate's uncertainty."""
    flat = yaml.safe_load(FLAT_YAML) | {"pool": make_spec(3).pool.model_dump(), "exploit_every": 3}
    grouped = make_spec(3).model_dump()
    grouped["algorithm"]["exploit_every"] = 0
    for stored in (flat, grouped):
        spec = SearchSpec.model_validate(stored)
        assert "exploit_every" not in spec.model_dump()["algorithm"]
        assert not hasattr(spec, "exploit_every")


def test_a_field_given_flat_and_grouped_or_unknown_is_refused():
    with pytest.raises(ValidationError, match="budget"):
        make_spec(3, budget=5, runtime={"budget": 6})
    with pytest.raises(ValidationError, match="budgett"):
        make_spec(3, budgett=5)
    with pytest.raises(ValidationError):
        make_spec(3, algorithm={"candidates": 0})


def test_the_sources_a_spec_asks_for_in_order():
    def kinds(**fields):
        spec = make_spec(4, **fields)
        return [type(s) for s in SearchDriver("s", spec, MemoryStore()).sources]

    assert kinds() == [FixedBaselines, GreedySoup, Prescreened]
    assert kinds(dominance_probes=3, surrogate=False) == [FixedBaselines, GreedySoup, DominanceProbes, StrategySource]
    assert kinds(baselines=False, strategy="random") == [StrategySource]  # one candidate: nothing to screen
    assert kinds(baselines=False, strategy="random", candidates=8) == [Prescreened]
    assert kinds(strategy="cmaes", candidates=1) == [FixedBaselines, GreedySoup, StrategySource]


def test_the_first_source_that_offers_wins_and_the_strategy_hears_what_it_proposed():
    spec = make_spec(4, budget=16, strategy="random", candidates=8)
    store = MemoryStore()
    store.create_search("s", spec)
    driver = SearchDriver("s", spec, store)
    run(driver)
    proposals = store.proposals("s")
    kinds = [p.source.kind for p in proposals]
    assert kinds[:5] == ["single"] * 4 + ["uniform"] and "greedy" in kinds and "random" in kinds
    # The strategy was told every result and knows only its own proposals as proposed.
    assert set(driver.strategy.told) == set(range(16))
    assert {n: w for n, w in driver.strategy.proposed.items()} == {
        p.number: driver.space.to_strategy(p.weights) for p in proposals if p.source.kind == "random"}
    # Pre-screened random candidates are not the plain random draws (candidate 0) every time.
    plain = make_spec(4, budget=16, strategy="random")
    plain_store = MemoryStore()
    plain_store.create_search("s", plain)
    run(SearchDriver("s", plain, plain_store))
    assert [p.weights for p in plain_store.proposals("s")] != [p.weights for p in proposals]


def test_a_source_with_nothing_to_offer_passes_to_the_next():
    spec = make_spec(3, budget=8)
    store = MemoryStore()
    store.create_search("s", spec)
    driver = SearchDriver("s", spec, store)
    first = driver.propose(4)  # 3 singles and the uniform soup; the greedy soup waits for the singles
    assert [str(p.source) for p in first] == ["single:c0", "single:c1", "single:c2", "uniform"]
    assert driver.sources[1].offer(4, driver.history) is None
    assert driver.propose(1)[0].source.kind == "tpe"


def test_a_search_stored_before_the_types_resumes_from_redis(redis_client):
    """Flat spec and text sources in Redis, as searches written before the grouping were stored:
    a restarted proposer loads them and carries on exactly as one that never stopped."""
    import json
    import random

    from contracts import keys
    from proposer.redis_store import RedisStore
    from tests.proposer.search_fakes import ok

    spec = make_spec(3, budget=14, concurrency=2)
    reference = MemoryStore()
    reference.create_search("old", spec)
    run(SearchDriver("old", spec, reference), rng=random.Random(3))

    interrupted = MemoryStore()
    interrupted.create_search("old", spec)
    rng = random.Random(3)
    in_flight = run(SearchDriver("old", spec, interrupted), rng=rng, stop_after=8)
    store = RedisStore(redis_client)
    store.create_search("old", spec)
    flat = {"pool": spec.pool.model_dump(mode="json"), **{k: v for group in ("problem", "algorithm", "runtime")
                                                        for k, v in spec.model_dump(mode="json")[group].items()}}
    del flat["candidates"], flat["left_out_tasks"]  # fields added since
    redis_client.hset(keys.search("old"), "spec", json.dumps(flat))

    def as_text(proposal: dict) -> dict:
        return {**proposal, "source": str(Source.model_validate(proposal["source"]))}

    for proposal in interrupted.proposals("old"):
        redis_client.hset(keys.proposals("old"), proposal.trial_id, json.dumps(as_text(proposal.model_dump(mode="json"))))
    for result in interrupted.results("old"):
        stored = result.model_dump(mode="json")
        redis_client.hset(keys.results("old"), result.trial_id, json.dumps({**stored, "proposal": as_text(stored["proposal"])}))
        redis_client.rpush(keys.result_order("old"), result.trial_id)

    loaded = store.get_search("old")
    assert loaded == spec
    assert {str(p.source) for p in store.proposals("old")} >= {"single:c0", "uniform"}
    resumed = SearchDriver("old", loaded, store)
    run(resumed, ok, rng=rng, in_flight=in_flight)  # the same completion order from here on
    assert [(p.number, str(p.source), p.weights) for p in store.proposals("old")] == [
        (p.number, str(p.source), p.weights) for p in reference.proposals("old")]
