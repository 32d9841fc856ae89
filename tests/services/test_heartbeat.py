"""A worker process's heartbeat and leases against a real (in-memory) store."""

from __future__ import annotations

import socket
import subprocess
import time

from contracts.liveness import DONE_PREFIX, TrialRef
from proposer.store import MemoryStore
from recycle.serve.heartbeat import Heartbeat
from tests.proposer.search_fakes import make_spec
from tests.proposer.store_contract import proposal

HOST = socket.gethostname()


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def wait_until(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_trial_is_leased_by_one_process_then_marked_done():
    store = MemoryStore()
    store.create_search("s1", make_spec())
    mine, other = Heartbeat(store, f"{HOST}:1", "cpu", 60, 5), Heartbeat(store, "elsewhere:2", "cpu", 60, 5)
    trial = proposal(0)
    assert mine.claim(trial) is None
    assert other.claim(trial) == f"{HOST}:1"  # running here: the second message is skipped
    record = next(w for w in store.workers() if w.id == f"{HOST}:1")  # claiming beats at once
    assert record.current_trial == TrialRef(search_id="s1", trial_id=trial.trial_id) and record.device == "cpu"
    mine.finished("demo", published=True)  # wakes the thread: it beats with the trial counted
    wait_until(lambda: next(w for w in store.workers() if w.id == f"{HOST}:1").trials_done == 1)
    assert store.leases("s1", [trial.trial_id]) == {trial.trial_id: DONE_PREFIX + f"{HOST}:1"}
    assert other.claim(trial) == DONE_PREFIX + f"{HOST}:1"  # just finished: skipped too
    record = next(w for w in store.workers() if w.id == f"{HOST}:1")
    assert record.current_trial is None and record.pools == ("demo",) and record.trials_done == 1


def test_a_dead_local_holder_is_taken_over_at_once():
    store = MemoryStore()
    store.create_search("s1", make_spec())
    dead = f"{HOST}:{dead_pid()}"
    store.claim_trial("s1", proposal(0).trial_id, dead, ttl_s=60)  # its pool process was SIGKILLed
    heir = Heartbeat(store, f"{HOST}:{dead_pid() + 1_000_000}", "cpu", 60, 5)
    assert heir.claim(proposal(0)) is None
    store.claim_trial("s1", proposal(1).trial_id, "other-host:1", ttl_s=60)  # another host's: not judged from here
    assert heir.claim(proposal(1)) == "other-host:1"


def test_a_process_that_leaves_is_no_longer_listed():
    store = MemoryStore()
    beat = Heartbeat(store, f"{HOST}:3", "cpu", ttl_s=0.6, grace_s=5)  # beats every 0.1 s
    wait_until(lambda: [w.id for w in store.workers()] == [f"{HOST}:3"])
    beat.leave()
    time.sleep(0.3)
    assert store.workers() == []
