"""Shared fixtures: one real, tiny, trained checkpoint pool per test session."""

from __future__ import annotations

import os
import socket

import pytest

# Tests run on 2 cores next to worker subprocesses: keep torch from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "1")

TEST_REDIS_URL = os.environ.get("RECYCLE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture(scope="session")
def demo_pool(tmp_path_factory):
    """The demo pool at test scale: a real tokenizer and real GPT-2 specialists, trained here."""
    from recycle.demo.tiny_pool import build_demo_pool

    return build_demo_pool(tmp_path_factory.mktemp("demo-pool"), scale="test", seed=0, log=lambda *a, **k: None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def redis_client():
    """A clean Redis database for one test (a separate db number, flushed before and after)."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"Redis is not reachable at {TEST_REDIS_URL}: start redis-server (.ci/run does)")
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="session")
def recycling_pool(tmp_path_factory):
    """The recycling pool at test scale: generalist runs at two stages, an lm_loss, a multiple-choice
    and a left-out task, every row with its group."""
    from recycle.demo.recycling_pool import build_recycling_pool

    return build_recycling_pool(tmp_path_factory.mktemp("recycling-pool"), scale="test", seed=0, log=lambda *a, **k: None)
