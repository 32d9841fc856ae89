"""The running stack as a fixture, and helpers to drive it over HTTP. Shared by the
stack tests and the status-page tests (each folder's conftest.py imports `stack`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TEST_REDIS_URL, free_port
from tests.stack.processes import Stack, http, wait_for

TOKEN = "stack-test-token"
BUDGET = 14


def allowed_roots(demo_pool) -> list[str]:
    return sorted({str(Path(c.path).parent.parent) for c in demo_pool.pool.checkpoints} |
                  {str(Path(t.path).parent.parent) for t in demo_pool.tasks})


@pytest.fixture
def stack(demo_pool, redis_client, tmp_path):
    """Two Celery workers, the proposer and the API, as compose runs them, on the test Redis DB."""
    ports = {"api": free_port(), "proposer": free_port(), "worker-1": free_port(), "worker-2": free_port()}
    running = Stack(
        {
            "RECYCLE_REDIS_URL": TEST_REDIS_URL,
            "RECYCLE_ALLOWED_ROOTS": json.dumps(allowed_roots(demo_pool)),
            "RECYCLE_API_TOKEN": TOKEN,
            "RECYCLE_DATA_DIR": str(tmp_path / "data"),
            "RECYCLE_DEVICE": "cpu",
        },
        tmp_path,
    )
    for worker in ("worker-1", "worker-2"):
        running.start(worker, "worker", "--concurrency", "1", "--metrics-port", str(ports[worker]))
    running.start("proposer", "proposer", "--metrics-port", str(ports["proposer"]))
    running.start("api", "api", "--port", str(ports["api"]))
    running.ports = ports
    running.base = f"http://127.0.0.1:{ports['api']}"
    try:
        wait_for(lambda: http("GET", running.base + "/healthz")[0] == 200, 60, "the API", running)
        yield running
    finally:
        running.stop_all()


def start_search(stack, demo_pool, **overrides) -> str:
    status, pool = http("POST", stack.base + "/v1/pools", demo_pool.pool.model_dump(mode="json"), TOKEN)
    assert status == 201, pool
    body = {"pool_id": pool["id"], "tasks": [t.model_dump(mode="json") for t in demo_pool.tasks],
            "strategy": "tpe", "budget": BUDGET, "concurrency": 2, "seed": 3, **overrides}
    status, search = http("POST", stack.base + "/v1/searches", body, TOKEN)
    assert status == 201, search
    return search["id"]


def wait_until_finished(stack, search_id: str, timeout: float = 300) -> dict:
    def finished():
        status, view = http("GET", f"{stack.base}/v1/searches/{search_id}")
        return view if status == 200 and view["status"] == "completed" else None

    return wait_for(finished, timeout, f"search {search_id} to complete", stack)
