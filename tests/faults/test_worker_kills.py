"""Workers SIGKILLed in the middle of trials, 10 times in one search: every killed trial
runs again (a pool process's at once, a whole worker's once its lease lapses), the search
reaches its budget, nothing is recorded or counted twice, hardly anything runs twice."""

from __future__ import annotations

import pytest

from tests.faults.conftest import assert_no_secret_in_logs, make_stack
from tests.faults.scenarios import worker_kills

KILLS = 10
WHOLE_KILLS = 3
BUDGET = 40
# Lowered from the production 30 s so a trial of a wholly killed worker comes back within
# seconds (bench/faults.py runs the defaults).
LEASE_TTL_S = 3


@pytest.fixture(scope="module")
def stack(demo_pool, redis_server, tmp_path_factory):
    running = make_stack(demo_pool, redis_server, tmp_path_factory,
                         env={"RECYCLE_LEASE_TTL_S": str(LEASE_TTL_S)})
    try:
        yield running.up(workers=2)
    finally:
        running.stop_all()


def test_workers_killed_mid_trial_ten_times(stack, demo_pool):
    pool_id = stack.register_pool(demo_pool.pool)
    outcome = worker_kills(stack, pool_id, demo_pool.tasks, kills=KILLS, whole_kills=WHOLE_KILLS, budget=BUDGET)

    kills = outcome["kills"]
    assert len(kills) == KILLS and sum(k.whole for k in kills) == WHOLE_KILLS
    # Every killed trial was redelivered and ran again in another process, and its
    # recorded result is that rerun's, ok.
    assert [k.trial_id for k in outcome["survived"]] == [k.trial_id for k in kills], outcome["reruns"]
    # The search reached its budget; every trial id appears exactly once, none failed.
    view, trials = outcome["view"], outcome["trials"]
    assert view["status"] == "completed" and view["done"] == BUDGET and view["failed"] == 0
    ids = [t["proposal"]["trial_id"] for t in trials]
    assert len(ids) == BUDGET and len(set(ids)) == BUDGET
    assert outcome["lost"] == 0
    # Counted once each on the proposer's /metrics, however often a trial ran.
    assert outcome["counted"] == BUDGET and outcome["duplicates_counted"] == 0
    # Each trial's result was published once or nearly: killed runs never publish, and a
    # second message of a trial finds it leased or done and is skipped.
    assert BUDGET <= outcome["executions"] <= 1.1 * BUDGET
    assert all(delay is not None for delay in outcome["recovery_s"]), outcome["recovery_s"]
    # The dead pool processes no longer count as live ones.
    for gauges in outcome["worker_gauges"].values():
        assert gauges == {"recycle_worker_processes": 1.0, "recycle_worker_busy": 0.0}
    assert_no_secret_in_logs(stack)
