"""Worker liveness on real processes (two Celery workers, the proposer, the API, a Redis
of their own): heartbeats visible through GET /v1/workers, a killed worker going stale,
SIGTERM as `docker compose stop` sends it (to the main process only) finishing the running
trial once, and a trial past the grace handed back and run once elsewhere.

worker-1 runs with no grace at all (it hands back at once), worker-2 with GRACE_S."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from tests.faults.conftest import make_stack
from tests.stack.processes import wait_for

LEASE_TTL_S = 3  # lowered from 30 s so a dead worker goes stale within seconds
GRACE_S = 30


@pytest.fixture(scope="module")
def stack(demo_pool, redis_server, tmp_path_factory):
    running = make_stack(demo_pool, redis_server, tmp_path_factory,
                         env={"RECYCLE_LEASE_TTL_S": str(LEASE_TTL_S), "RECYCLE_WORKER_SHUTDOWN_GRACE_S": str(GRACE_S)})
    try:
        yield running.up(workers=2, worker_env={"worker-1": {"RECYCLE_WORKER_SHUTDOWN_GRACE_S": "0"}})
    finally:
        running.stop_all()


@pytest.fixture(scope="module")
def pool_id(stack, demo_pool):
    return stack.register_pool(demo_pool.pool)


def starts(stack, trial_id: str) -> list[int]:
    """Pids of the processes that started this trial."""
    return [e[2] for w in stack.workers for e in stack.events(w) if e[0] == "started" and e[1] == trial_id]


def stop_like_compose(stack, name: str, child: int) -> tuple[subprocess.Popen, float]:
    """SIGTERM to the worker's main process (tini forwards it to its child only), with the
    pool process `child` held by SIGSTOP until then; returns the process and its seconds to exit."""
    process = stack.processes.pop(name)
    started = time.monotonic()
    os.kill(process.pid, signal.SIGTERM)
    os.kill(child, signal.SIGCONT)
    process.wait(timeout=GRACE_S + 30)
    return process, time.monotonic() - started


def alive_workers(stack) -> dict[str, dict]:
    return {w["id"]: w for w in stack.workers_view()["workers"] if w["alive"]}


def test_workers_are_visible_and_a_killed_one_goes_stale(stack, pool_id, demo_pool):
    host = socket.gethostname()
    ids = {name: f"{host}:{stack.children(name)[0]}" for name in stack.workers}
    listed = wait_for(lambda: (lambda a: a if set(ids.values()) <= set(a) else None)(alive_workers(stack)), 30,
                      "both workers' heartbeats", stack)
    assert stack.workers_view()["stale_after_s"] == LEASE_TTL_S
    assert all(listed[i]["host"] == host and listed[i]["device"] == "cpu" for i in ids.values())
    # The stack's OMP_NUM_THREADS=1 is honoured (tests/services/test_worker_threads.py: the rest).
    assert all("ready: 1 torch threads" in stack.log(name, tail=None) for name in stack.workers)

    budget = 6
    search_id = stack.start_search(pool_id, demo_pool.tasks, budget=budget, concurrency=2)
    stack.wait_completed(search_id)
    done = wait_for(lambda: (lambda a: a if sum(a[i]["trials_done"] for i in ids.values()) == budget else None)(
        alive_workers(stack)), 30, "the trials counted in the heartbeats", stack)
    assert all(done[i]["pools"] == [demo_pool.pool.name] for i in ids.values() if done[i]["trials_done"])
    assert all(done[i]["current_trial"] is None for i in ids.values())
    assert stack.view(search_id)["workers_alive"] >= 2

    stack.kill("worker-2")  # the whole worker: no goodbye
    record = wait_for(lambda: next((w for w in stack.workers_view()["workers"] if w["id"] == ids["worker-2"]
                                    and not w["alive"]), None), 30, "the killed worker to go stale", stack)
    assert record["last_heartbeat"] < time.time() - LEASE_TTL_S
    assert stack.view(search_id)["workers_alive"] == len(alive_workers(stack))
    stack.restart("worker-2")
    stack.wait_worker_ready("worker-2")


def test_sigterm_mid_trial_finishes_it_once_within_the_grace(stack, pool_id, demo_pool):
    search_id = stack.start_search(pool_id, demo_pool.tasks, budget=8, concurrency=2)
    name, pid, trial = stack.freeze_mid_trial(["worker-2"], search_id)
    process, seconds = stop_like_compose(stack, name, pid)
    assert process.returncode == 0 and seconds < GRACE_S
    assert "handed back" not in stack.log(name, tail=None)
    stack.restart(name)  # for the next test; this search finishes on worker-1
    stack.wait_completed(search_id)
    result = next(t for t in stack.trials(search_id) if t["proposal"]["trial_id"] == trial)
    assert result["status"] == "ok" and result["worker"].endswith(f":{pid}")
    assert starts(stack, trial) == [pid]  # no rerun
    assert [r.trial_id for r in stack.published()].count(trial) == 1
    # It left cleanly: its record is gone rather than stale.
    assert f":{pid}" not in str([w["id"] for w in stack.workers_view()["workers"]])


def test_a_trial_past_the_grace_is_handed_back_and_runs_once_elsewhere(stack, pool_id, demo_pool):
    """Grace 0 on worker-1, trials slowed down (batches of one window): SIGTERM mid-trial releases the lease at once,
    the process ends, and worker-2 runs the trial (one result published)."""
    stack.wait_worker_ready("worker-2")
    slow = [t.model_copy(update={"max_items": 32, "batch_size": 1}) for t in demo_pool.tasks]
    search_id = stack.start_search(pool_id, slow, budget=4, concurrency=2)
    name, pid, trial = stack.freeze_mid_trial(["worker-1"], search_id)
    process, _ = stop_like_compose(stack, name, pid)
    assert process.returncode == 0
    assert f"trial {trial} not done" in stack.log(name, tail=None) and "handed back" in stack.log(name, tail=None)
    stack.wait_completed(search_id)
    result = next(t for t in stack.trials(search_id) if t["proposal"]["trial_id"] == trial)
    rerun = [p for p in starts(stack, trial) if p != pid]
    assert result["status"] == "ok" and len(rerun) == 1 and result["worker"].endswith(f":{rerun[0]}")
    assert [r.trial_id for r in stack.published()].count(trial) == 1
