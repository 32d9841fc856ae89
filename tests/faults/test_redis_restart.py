"""Redis killed (SIGKILL) mid-search and started again on its AOF: every process
reconnects with backoff and says so in its log, a result finished during the outage is
spooled to disk and published once Redis is back, and the search completes with nothing
lost or doubled."""

from __future__ import annotations

import pytest

from tests.faults.conftest import assert_no_secret_in_logs, make_stack
from tests.faults.scenarios import redis_restart

BUDGET = 16


@pytest.fixture
def stack(demo_pool, redis_server, tmp_path_factory):
    running = make_stack(demo_pool, redis_server, tmp_path_factory)
    try:
        yield running.up(workers=1)
    finally:
        running.stop_all()


def test_redis_restarted_mid_search(stack, redis_server, demo_pool):
    pool_id = stack.register_pool(demo_pool.pool)
    outcome = redis_restart(stack, redis_server, pool_id, demo_pool.tasks, budget=BUDGET, down_s=4.0)

    view, trials = outcome["view"], outcome["trials"]
    assert view["status"] == "completed" and view["done"] == BUDGET and view["failed"] == 0
    ids = [t["proposal"]["trial_id"] for t in trials]
    assert len(ids) == BUDGET and len(set(ids)) == BUDGET
    assert outcome["counted"] == BUDGET  # the proposer lived through it: counted once each

    # The trial that finished while Redis was down was published after it came back.
    trial = outcome["trial_during_outage"]
    worker_log = stack.log(outcome["worker"], tail=None)
    assert f"redis unavailable while publishing the result of trial {trial}" in worker_log
    assert f"spooled result of trial {trial} published" in worker_log  # by the worker's main process
    assert stack.metrics(outcome["worker"])["recycle_worker_spooled_results"] == 0
    assert next(t for t in trials if t["proposal"]["trial_id"] == trial)["status"] == "ok"
    # Each process noticed, backed off and came back.
    assert "consumer: Cannot connect to redis://" in worker_log and "Trying again in" in worker_log
    proposer_log = stack.log("proposer", tail=None)
    assert "redis unavailable (" in proposer_log and "; retrying in " in proposer_log
    assert "redis reachable again" in proposer_log
    # The API answered 503 with a JSON error while the store was gone, not 500.
    status, body = outcome["health_during_outage"]
    assert status == 503 and "unavailable" in body["error"]
    assert_no_secret_in_logs(stack)
