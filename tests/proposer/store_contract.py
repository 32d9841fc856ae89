"""The behaviour every SearchStore must show, as one suite.

Subclass `StoreContract` in a test module and give it a `store` fixture that
returns a fresh, empty store (see test_memory_store.py); a Redis store plugs in
the same way.
"""

from __future__ import annotations

import threading
import time

import pytest

from contracts import CheckpointRef, PoolSpec, Proposal, SearchStatus
from contracts.liveness import DONE_PREFIX, TrialRef, WorkerInfo
from proposer.store import SearchExists, UnknownSearch
from tests.proposer.search_fakes import failed, make_spec, ok


def proposal(number: int, search_id: str = "s1", weights=(0.5, 0.5, 0.0, 0.0)) -> Proposal:
    return Proposal(
        search_id=search_id,
        trial_id=Proposal.make_trial_id(search_id, number),
        number=number,
        weights=weights,
        source="tpe",
    )


def pool(name: str) -> PoolSpec:
    return PoolSpec(name=name, checkpoints=(CheckpointRef(name="a", path="/a"),))


class StoreContract:
    @pytest.fixture
    def store(self):
        raise NotImplementedError("a store contract test module provides a fresh store")

    @pytest.fixture
    def searching(self, store):
        """A store holding two searches, s1 and s2."""
        store.create_search("s1", make_spec())
        store.create_search("s2", make_spec(budget=5))
        return store

    def test_pools(self, store):
        assert store.get_pool("p") is None and store.list_pools() == {}
        store.put_pool("p", pool("first"))
        store.put_pool("q", pool("other"))
        store.put_pool("p", pool("second"))  # replaces
        assert store.get_pool("p") == pool("second")
        assert store.list_pools() == {"p": pool("second"), "q": pool("other")}

    def test_searches_in_creation_order(self, store):
        assert store.list_searches() == [] and store.get_search("s1") is None
        for search_id in ["zeta", "alpha", "mid"]:
            store.create_search(search_id, make_spec(budget=len(search_id)))
        assert store.list_searches() == ["zeta", "alpha", "mid"]
        assert store.get_search("alpha") == make_spec(budget=5)

    def test_a_search_id_is_created_once(self, searching):
        with pytest.raises(SearchExists):
            searching.create_search("s1", make_spec(budget=99))
        assert searching.get_search("s1") == make_spec()

    def test_status(self, searching):
        assert searching.get_status("s1") is SearchStatus.running
        searching.set_status("s1", SearchStatus.paused)
        assert searching.get_status("s1") is SearchStatus.paused
        assert searching.get_status("s2") is SearchStatus.running
        assert searching.get_status("nope") is None
        with pytest.raises(UnknownSearch):
            searching.set_status("nope", SearchStatus.cancelled)

    def test_proposals_by_number_and_idempotent(self, searching):
        for number in [2, 0, 1]:
            assert searching.add_proposal(proposal(number))
        assert not searching.add_proposal(proposal(1, weights=(1.0, 0.0, 0.0, 0.0)))  # first one stays
        assert searching.proposals("s1") == [proposal(0), proposal(1), proposal(2)]
        assert searching.proposals("s2") == [] and searching.proposals("nope") == []
        assert searching.get_proposal("s1", proposal(1).trial_id) == proposal(1)
        assert searching.get_proposal("s1", "s1-t999999") is None and searching.get_proposal("nope", "x") is None

    def test_proposals_need_their_search(self, store):
        with pytest.raises(UnknownSearch):
            store.add_proposal(proposal(0, search_id="nope"))

    def test_first_result_wins(self, searching):
        first, second = ok(proposal(0)), failed(proposal(0))
        assert searching.record_result(first)
        assert not searching.record_result(second)
        assert searching.results("s1") == [first]
        assert searching.get_result("s1", first.trial_id) == first

    def test_results_in_record_order(self, searching):
        results = [ok(proposal(n)) for n in [3, 0, 2]] + [failed(proposal(1))]
        for result in results:
            searching.record_result(result)
        other = ok(proposal(0, search_id="s2"))
        searching.record_result(other)
        assert searching.results("s1") == results
        assert searching.results("s2") == [other]
        assert searching.get_result("s1", "s1-t999999") is None
        assert searching.get_result("nope", other.trial_id) is None and searching.results("nope") == []

    def test_results_need_their_search(self, store):
        with pytest.raises(UnknownSearch):
            store.record_result(ok(proposal(0, search_id="nope")))

    def test_concurrent_duplicates_are_recorded_once(self, searching):
        result = ok(proposal(0))
        outcomes = []

        def deliver():
            outcomes.append(searching.record_result(result))

        threads = [threading.Thread(target=deliver) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == [False] * 7 + [True]
        assert searching.results("s1") == [result]

    def test_concurrent_writers_lose_nothing(self, searching):
        def write(start):
            for number in range(start, 200, 4):
                searching.add_proposal(proposal(number))
                searching.record_result(ok(proposal(number)))

        threads = [threading.Thread(target=write, args=(start,)) for start in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [p.number for p in searching.proposals("s1")] == list(range(200))
        assert len(searching.results("s1")) == 200

    def test_sent_times(self, searching):
        assert searching.sent_at("s1") == {} and searching.sent_at("nope") == {}
        searching.mark_sent("s1", "s1-t000000", 1700000000.25)
        searching.mark_sent("s1", "s1-t000001", 1700000001.5)
        searching.mark_sent("s1", "s1-t000000", 1700000002.0)  # a re-send moves the clock
        assert searching.sent_at("s1") == {"s1-t000000": 1700000002.0, "s1-t000001": 1700000001.5}
        assert searching.sent_at("s2") == {}
        with pytest.raises(UnknownSearch):
            searching.mark_sent("nope", "x", 1.0)

    def test_ping(self, store):
        store.ping()

    # -- liveness -------------------------------------------------------------------
    def test_a_lease_is_held_by_one_worker_until_it_lapses(self, searching):
        trial = proposal(0).trial_id
        assert searching.claim_trial("s1", trial, "host:1", ttl_s=0.3) is None
        assert searching.claim_trial("s1", trial, "host:2", ttl_s=30) == "host:1"  # taken: nothing changes
        assert searching.claim_trial("s1", trial, "host:1", ttl_s=0.3) is None  # its own again
        assert searching.leases("s1", [trial, "s1-t000009"]) == {trial: "host:1"}
        assert searching.claims("s1") == {trial: "host:1"}
        time.sleep(0.5)
        assert searching.leases("s1", [trial]) == {}
        assert not searching.renew_lease("s1", trial, "host:1", ttl_s=30)  # lapsed: gone for good
        assert searching.claims("s1") == {trial: "host:1"}  # the claim outlives the lease
        assert searching.claim_trial("s1", trial, "host:2", ttl_s=30) is None
        assert searching.claims("s1") == {trial: "host:2"} and searching.claims("s2") == {}
        with pytest.raises(UnknownSearch):
            searching.claim_trial("nope", trial, "host:1", ttl_s=30)

    def test_renewal_keeps_a_lease_and_only_its_holder_renews(self, searching):
        trial = proposal(0).trial_id
        searching.claim_trial("s1", trial, "host:1", ttl_s=0.4)
        for _ in range(4):
            time.sleep(0.2)
            assert searching.renew_lease("s1", trial, "host:1", ttl_s=0.4)
            assert not searching.renew_lease("s1", trial, "host:2", ttl_s=30)
        assert searching.leases("s1", [trial]) == {trial: "host:1"}

    def test_a_holder_known_dead_is_replaced(self, searching):
        trial = proposal(0).trial_id
        searching.claim_trial("s1", trial, "host:1", ttl_s=30)
        assert searching.claim_trial("s1", trial, "host:2", ttl_s=30, replacing="host:3") == "host:1"
        assert searching.claim_trial("s1", trial, "host:2", ttl_s=30, replacing="host:1") is None
        assert searching.leases("s1", [trial]) == {trial: "host:2"}

    def test_ending_a_lease(self, searching):
        done, handed_back = proposal(0).trial_id, proposal(1).trial_id
        for trial in (done, handed_back):
            searching.claim_trial("s1", trial, "host:1", ttl_s=30)
        searching.end_lease("s1", done, "host:2", ttl_s=30, done=True)  # not its lease: no effect
        assert searching.leases("s1", [done]) == {done: "host:1"}
        searching.end_lease("s1", done, "host:1", ttl_s=0.3, done=True)
        searching.end_lease("s1", handed_back, "host:1", ttl_s=30, done=False)
        # A finished trial's marker keeps a late duplicate away; a handed-back trial is free.
        assert searching.leases("s1", [done, handed_back]) == {done: DONE_PREFIX + "host:1"}
        assert searching.claim_trial("s1", done, "host:2", ttl_s=30) == DONE_PREFIX + "host:1"
        assert searching.claim_trial("s1", handed_back, "host:2", ttl_s=30) is None
        time.sleep(0.5)
        assert searching.leases("s1", [done]) == {}

    def test_claims_and_reproposal_counts(self, searching):
        trial = proposal(0).trial_id
        searching.claim_trial("s1", trial, "host:1", ttl_s=30)
        searching.drop_claim("s1", trial)
        searching.drop_claim("s1", "s1-t000009")
        assert searching.claims("s1") == {}
        assert [searching.count_reproposal("s1", trial) for _ in range(3)] == [1, 2, 3]
        assert searching.count_reproposal("s2", trial) == 1
        with pytest.raises(UnknownSearch):
            searching.count_reproposal("nope", trial)

    def test_worker_heartbeats(self, store):
        assert store.workers() == []
        first = WorkerInfo(id="b:2", host="b", device="cpu", last_heartbeat=1.0)
        other = WorkerInfo(id="a:1", host="a", device="cuda", pools=("demo",),
                           current_trial=TrialRef(search_id="s1", trial_id="s1-t000000"), last_heartbeat=5.0, trials_done=3)
        store.beat(first)
        store.beat(other)
        later = first.model_copy(update={"last_heartbeat": 9.5, "trials_done": 1})
        store.beat(later)  # replaces
        assert store.workers() == [other, later]
        store.forget_worker("a:1")
        store.forget_worker("nobody")
        assert store.workers() == [later]
