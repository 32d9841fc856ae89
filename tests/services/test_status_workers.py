"""`recycle status` shows the workers' heartbeats and warns when a running search has
trials in flight and no live worker (the test Redis DB, the real CLI entry point)."""

from __future__ import annotations

import time

import pytest
from rich.console import Console

from contracts.liveness import TrialRef, WorkerInfo
from proposer import SearchDriver
from proposer.redis_store import RedisStore
from recycle import cli
from recycle.commands import common
from tests.conftest import TEST_REDIS_URL
from tests.proposer.search_fakes import make_spec

WARNING = "trials in flight and no live worker"


@pytest.fixture
def store(redis_client, monkeypatch):
    monkeypatch.setenv("RECYCLE_REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setattr(common, "console", Console(width=250))
    store = RedisStore(redis_client)
    store.create_search("s-waiting", make_spec(budget=6, concurrency=2))
    SearchDriver("s-waiting", store.get_search("s-waiting"), store).propose(2)  # sent, never answered
    return store


def status(capsys, *args) -> str:
    assert cli.main(["status", *args]) == 0
    return capsys.readouterr().out


def test_no_live_worker_is_a_warning(store, capsys):
    store.beat(WorkerInfo(id="gone:1", host="gone", device="cpu", last_heartbeat=time.time() - 3600))
    out = status(capsys)
    assert "workers: 0 alive, 1 silent for over 30 s" in out
    assert f"search s-waiting: 2 {WARNING}" in out
    assert f"search s-waiting: 2 {WARNING}" in status(capsys, "s-waiting")


def test_live_workers_are_listed_and_nothing_is_wrong(store, capsys):
    store.beat(WorkerInfo(id="gpu-1:7", host="gpu-1", device="cuda", pools=("demo",), trials_done=4,
                          current_trial=TrialRef(search_id="s-waiting", trial_id="s-waiting-t000000"),
                          last_heartbeat=time.time()))
    out = status(capsys)
    assert "workers: 1 alive" in out and "gpu-1:7  cuda  trial s-waiting-t000000  4 done  (demo)" in out
    assert WARNING not in out
