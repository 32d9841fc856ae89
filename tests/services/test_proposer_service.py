"""The proposer service against a real Redis, with workers simulated in-process:
results go through the real results stream; the sender only decides when."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from contracts import SearchStatus
from contracts.liveness import TrialRef, WorkerInfo
from proposer.redis_store import RedisStore, ResultsStream
from recycle.serve.metrics import ProposerMetrics
from recycle.serve.proposer_service import FORGET_AFTER_TTLS, ProposerService
from recycle.settings import Settings
from tests.proposer.search_fakes import make_spec, ok

# Leases in these tests lapse in a fraction of a second (Redis times them, in real time).
TTL_S = 0.3


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def make_service(redis_client, send, clock=None, **settings):
    store = RedisStore(redis_client)
    registry = CollectorRegistry()
    service = ProposerService(store, send, ProposerMetrics.create(registry), clock=clock or Clock(),
                              settings=Settings(**settings))
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


def test_a_trial_whose_lease_lapses_goes_out_again_then_fails(redis_client):
    """A worker claims a trial and vanishes: once its lease lapses the same trial id goes
    out again, at most max_reproposals times, then it is failed with the reason. A
    trial never claimed (still queued) and one whose lease is renewed are left alone."""
    clock, sent = Clock(), []
    service, store, registry = make_service(redis_client, lambda p, spec: sent.append(p), clock,
                                            lease_ttl_s=TTL_S, max_reproposals=2)
    store.create_search("s", make_spec(budget=6, concurrency=3))
    service.step(block_ms=10)
    lost, queued, renewed = sent
    clock.now += 2 * TTL_S  # one whole TTL watched since the service started
    store.claim_trial("s", renewed.trial_id, "w:2", ttl_s=60)
    for attempt in (1, 2, 3):
        sent.clear()
        store.claim_trial("s", lost.trial_id, f"w:{attempt}", ttl_s=TTL_S)
        service.step(block_ms=10)
        assert sent == []  # the lease is live
        time.sleep(TTL_S + 0.2)
        service.step(block_ms=10)
        if attempt <= 2:
            assert sent == [lost], attempt  # the same trial id, the same weights
            assert registry.get_sample_value("recycle_trials_reproposed_total", {"search": "s"}) == attempt
    assert sent != [lost]  # the third lapse: not sent again but failed (and a new trial takes its place)
    result = store.get_result("s", lost.trial_id)
    assert result.status.value == "failed" and "lost its worker 3 times (last w:3)" in result.error
    assert store.get_result("s", queued.trial_id) is None and store.get_result("s", renewed.trial_id) is None
    assert queued not in sent and renewed not in sent


def test_leases_are_judged_only_after_one_ttl_of_watching(redis_client):
    """After a start (or Redis coming back) workers get one TTL to renew their leases and
    publish what they spooled before a missing lease counts as lapsed."""
    clock, sent = Clock(), []
    service, store, _ = make_service(redis_client, lambda p, spec: sent.append(p), clock, lease_ttl_s=TTL_S)
    store.create_search("s", make_spec(budget=4, concurrency=1))
    service.step(block_ms=10)
    [trial] = sent
    store.claim_trial("s", trial.trial_id, "w:1", ttl_s=TTL_S)
    time.sleep(TTL_S + 0.2)
    service.step(block_ms=10)
    assert sent == [trial]
    clock.now += TTL_S
    service.step(block_ms=10)
    assert sent == [trial, trial]


def test_a_finished_trial_is_not_sent_again(redis_client):
    """A worker publishes, then turns its lease into a done marker: even if the proposer
    reads the lease before the result, the trial does not look lost."""
    clock, sent = Clock(), []
    service, store, _ = make_service(redis_client, lambda p, spec: sent.append(p), clock, lease_ttl_s=TTL_S)
    store.create_search("s", make_spec(budget=2, concurrency=1))
    service.step(block_ms=10)
    clock.now += TTL_S
    [trial] = sent
    store.claim_trial("s", trial.trial_id, "w:1", ttl_s=TTL_S)
    store.end_lease("s", trial.trial_id, "w:1", ttl_s=60, done=True)
    time.sleep(TTL_S + 0.2)
    service.resend_lapsed(service.driver("s"))
    assert sent == [trial]


def test_worker_gauges_and_forgetting_silent_workers(redis_client):
    clock = Clock()
    service, store, registry = make_service(redis_client, lambda p, spec: None, clock, lease_ttl_s=30)
    beat = dict(host="h", device="cpu")
    store.beat(WorkerInfo(id="h:1", last_heartbeat=clock.now - 1, **beat))
    store.beat(WorkerInfo(id="h:2", last_heartbeat=clock.now - 2, current_trial=TrialRef(search_id="s", trial_id="t"), **beat))
    store.beat(WorkerInfo(id="h:3", last_heartbeat=clock.now - 31, **beat))
    store.beat(WorkerInfo(id="h:4", last_heartbeat=clock.now - FORGET_AFTER_TTLS * 30 - 1, **beat))
    service.step(block_ms=10)
    gauges = {s: registry.get_sample_value("recycle_workers", {"state": s}) for s in ("alive", "busy", "stale")}
    assert gauges == {"alive": 2, "busy": 1, "stale": 1}
    assert [w.id for w in store.workers()] == ["h:1", "h:2", "h:3"]
