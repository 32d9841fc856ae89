"""The proposer service against a real Redis, with workers simulated in-process:
results go through the real results stream; the sender only decides when."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from contracts import SearchStatus
from proposer.redis_store import RedisStore, ResultsStream
from recycle.serve.metrics import ProposerMetrics
from recycle.serve.proposer_service import ProposerService
from tests.proposer.search_fakes import make_spec, ok


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def make_service(redis_client, send, clock=None):
    store = RedisStore(redis_client)
    registry = CollectorRegistry()
    service = ProposerService(store, send, ProposerMetrics.create(registry), clock=clock or Clock())
    return service, store, registry


def test_runs_a_search_to_its_budget_with_concurrency_in_flight(redis_client):
    sent = []
    service, store, registry = make_service(redis_client, lambda p, spec: sent.append(p))
    store.create_search("s", make_spec(budget=12, concurrency=3))
    stream = ResultsStream(redis_client, consumer="worker")
    while store.get_status("s") is SearchStatus.running:
        service.step(block_ms=10)
        assert service.drivers.get("s") is None or service.drivers["s"].in_flight <= 3
        for proposal in sent:
            stream.publish(ok(proposal))
            stream.publish(ok(proposal))  # every trial delivered twice: recorded once
        sent.clear()
    assert store.get_status("s") is SearchStatus.completed
    assert len(store.results("s")) == 12 and len({r.trial_id for r in store.results("s")}) == 12
    assert registry.get_sample_value("recycle_trials_total", {"search": "s", "status": "ok"}) == 12


def test_overdue_trials_fail_and_the_search_goes_on(redis_client):
    clock = Clock()
    sent = []
    service, store, registry = make_service(redis_client, lambda p, spec: sent.append(p), clock)
    store.create_search("s", make_spec(budget=4, concurrency=2, trial_timeout_s=60))
    service.step(block_ms=10)
    stuck, answered = sent[0], sent[1]
    ResultsStream(redis_client).publish(ok(answered))
    clock.now += 61
    service.step(block_ms=10)
    result = store.get_result("s", stuck.trial_id)
    assert result.status.value == "failed" and "timed out" in result.error
    assert registry.get_sample_value("recycle_trials_total", {"search": "s", "status": "failed"}) == 1
    ResultsStream(redis_client).publish(ok(stuck))  # the late real answer is a duplicate
    service.step(block_ms=10)
    assert store.get_result("s", stuck.trial_id).status.value == "failed"


def test_a_restarted_service_resends_what_never_left_and_continues(redis_client):
    store = RedisStore(redis_client)
    store.create_search("s", make_spec(budget=8, concurrency=2))
    lost = []

    def crash_before_sending(proposal, spec):
        lost.append(proposal)
        raise RuntimeError("killed between storing and sending")

    first, _, _ = make_service(redis_client, crash_before_sending)
    try:
        first.step(block_ms=10)
    except RuntimeError:
        pass
    assert store.proposals("s") and not store.sent_at("s")

    sent = []
    second, _, _ = make_service(redis_client, lambda p, spec: sent.append(p))
    second.step(block_ms=10)
    assert {p.trial_id for p in store.proposals("s")} == {p.trial_id for p in sent}  # the lost ones went out
    assert lost[0].trial_id in {p.trial_id for p in sent}
    stream = ResultsStream(redis_client, consumer="worker")
    while store.get_status("s") is SearchStatus.running:
        for proposal in sent:
            stream.publish(ok(proposal))
        sent.clear()
        second.step(block_ms=10)
    numbers = [p.number for p in store.proposals("s")]
    assert numbers == list(range(8))  # no proposal issued twice


def test_paused_searches_get_no_new_trials(redis_client):
    sent = []
    service, store, _ = make_service(redis_client, lambda p, spec: sent.append(p))
    store.create_search("s", make_spec(budget=10, concurrency=2))
    service.step(block_ms=10)
    store.set_status("s", SearchStatus.paused)
    stream = ResultsStream(redis_client, consumer="worker")
    for proposal in list(sent):
        stream.publish(ok(proposal))
    before = len(sent)
    service.step(block_ms=10)
    service.step(block_ms=10)
    assert len(sent) == before and len(store.results("s")) == before
    store.set_status("s", SearchStatus.running)
    service.step(block_ms=10)
    assert len(sent) == before + 2


def test_results_no_search_can_take_are_dropped_not_fatal(redis_client):
    """A stream entry that is not a result, a result for a trial the search never proposed
    and one missing an objective: each is logged, counted and acknowledged; the loop goes
    on and the genuine results are recorded."""
    sent = []
    service, store, registry = make_service(redis_client, lambda p, spec: sent.append(p))
    store.create_search("s", make_spec(budget=4, concurrency=2))
    service.step(block_ms=10)
    stream = ResultsStream(redis_client, consumer="worker")
    redis_client.xadd(stream.key, {"result": b"{not json"})
    redis_client.xadd(stream.key, {"other": b"field"})
    stranger = sent[0].model_copy(update={"weights": (0.1, 0.2, 0.3, 0.4)})
    stream.publish(ok(stranger))
    stream.publish(ok(sent[1], scores={"nll": 2.0}))  # "acc" missing
    stream.publish(ok(sent[0]))
    service.step(block_ms=10)
    service.step(block_ms=10)
    assert store.get_result("s", sent[0].trial_id).proposal == sent[0]
    assert store.get_result("s", sent[1].trial_id) is None
    assert registry.get_sample_value("recycle_errors_total", {"component": "proposer", "kind": "bad_result"}) == 4
    assert redis_client.xpending(stream.key, ResultsStream.GROUP)["pending"] == 0
