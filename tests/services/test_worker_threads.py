"""Torch threads per Celery pool process: the cores shared among the pool's processes,
unless the operator said otherwise (RECYCLE_WORKER_THREADS, then OMP_NUM_THREADS)."""

from __future__ import annotations

import os

import pytest

from recycle.serve import worker
from recycle.settings import Settings


@pytest.fixture
def cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    return 8


@pytest.mark.parametrize("concurrency, threads", [(1, 8), (2, 4), (3, 2), (8, 1), (16, 1)])
def test_cores_are_shared_among_pool_processes(monkeypatch, cores, concurrency, threads):
    monkeypatch.setattr(worker, "CONCURRENCY", concurrency)
    assert worker.threads_per_process() == threads


def test_the_operator_decides_first(monkeypatch, cores):
    monkeypatch.setattr(worker, "CONCURRENCY", 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert worker.threads_per_process() == 3
    monkeypatch.setattr(worker, "settings", Settings(worker_threads=5))
    assert worker.threads_per_process() == 5
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    monkeypatch.setattr(worker, "settings", Settings())
    assert worker.threads_per_process() == 4
