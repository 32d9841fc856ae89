"""The on-disk spool of results a worker could not publish: real files, a real Redis stream."""

from __future__ import annotations

import fcntl

import redis

from proposer.redis_store import ResultsStream
from recycle.serve.spool import Spool
from tests.proposer.store_contract import proposal
from tests.proposer.search_fakes import ok


def published(redis_client) -> list[str]:
    return [ResultsStream._parse(i, f).trial_id for i, f in redis_client.xrange(ResultsStream(redis_client).key)]


def test_results_wait_on_disk_and_a_new_process_publishes_them_in_order(redis_client, tmp_path):
    results = [ok(proposal(n)) for n in (2, 0, 1)]
    first = Spool(tmp_path / "spool", max_results=10)
    for result in results:
        assert first.put(result)
    assert first.count() == 3

    def unreachable(result):
        raise redis.ConnectionError("Redis is away")

    try:
        first.flush(unreachable)
    except redis.ConnectionError:
        pass
    assert first.count() == 3  # nothing lost while Redis is away

    restarted = Spool(tmp_path / "spool", max_results=10)  # the worker came back: same folder
    assert restarted.flush(ResultsStream(redis_client).publish) == 3
    assert published(redis_client) == [r.trial_id for r in results] and restarted.count() == 0


def test_the_spool_is_bounded(tmp_path):
    spool = Spool(tmp_path, max_results=2)
    assert spool.put(ok(proposal(0))) and spool.put(ok(proposal(1)))
    assert not spool.put(ok(proposal(2)))
    assert spool.count() == 2


def test_a_broken_file_is_set_aside_and_the_rest_goes_out(redis_client, tmp_path):
    spool = Spool(tmp_path, max_results=10)
    spool.put(ok(proposal(0)))
    (tmp_path / "00000000000000000001-1-broken.json").write_text("{not a result")
    assert spool.flush(ResultsStream(redis_client).publish) == 1
    assert published(redis_client) == [proposal(0).trial_id]
    assert [p.name for p in tmp_path.glob("*.bad")] == ["00000000000000000001-1-broken.bad"]


def test_one_flusher_at_a_time(redis_client, tmp_path):
    spool = Spool(tmp_path, max_results=10)
    spool.put(ok(proposal(0)))
    with (tmp_path / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker's flusher holds the folder
        assert spool.flush(ResultsStream(redis_client).publish) == 0
    assert spool.flush(ResultsStream(redis_client).publish) == 1
