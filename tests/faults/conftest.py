"""Fixtures of the fault tests: a Redis server of their own (AOF on, killable), and a
recycle deployment around it (tests/faults/scenarios.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.faults.scenarios import TOKEN, FaultStack
from tests.stack.processes import RedisServer


def allowed_roots(demo_pool, *extra: Path) -> list[str]:
    return sorted({str(Path(c.path).parent.parent) for c in demo_pool.pool.checkpoints}
                  | {str(Path(t.path).parent.parent) for t in demo_pool.tasks} | {str(p) for p in extra})


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """Never the machine's Redis: these tests kill it, and fill the broker with faults."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), free_port()).start()
    try:
        yield server
    finally:
        server.kill()


def make_stack(demo_pool, redis_server, tmp_path_factory, env=None) -> FaultStack:
    logs = tmp_path_factory.mktemp("stack")
    (logs / "pools").mkdir()
    return FaultStack(logs, redis_server.url(), allowed_roots(demo_pool, logs / "pools"), env=env)


def assert_no_secret_in_logs(stack: FaultStack) -> None:
    """The bearer token never reaches a log: every process's output, every incarnation."""
    text = stack.logs_text()
    assert text, "no process log to check"
    assert TOKEN not in text
