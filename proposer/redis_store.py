"""Search state in Redis: the store the API, the proposer service and workers share.

Layout (names in contracts.keys):
  pools            hash  pool id -> PoolSpec JSON
  searches         list  search ids in creation order
  search:<id>      hash  spec, status, created_at
  ...:proposals    hash  number -> Proposal JSON
  ...:sent         hash  trial id -> unix time it was sent to the workers
  ...:results      hash  trial id -> TrialResult JSON (first write wins)
  ...:order        list  trial ids in the order results were recorded
  ...:lease:<trial> string with a TTL: the worker running the trial
  ...:claims       hash  trial id -> worker that last took its lease
  ...:reproposals  hash  trial id -> lapses of its lease
  workers          hash  worker id -> WorkerInfo JSON (last heartbeat)
Recording a result is one Lua script, so "stored" and "listed in order" can
never disagree, however the proposer is interrupted.
"""

from __future__ import annotations

import logging
import time
from typing import Iterable

import redis

from contracts import PoolSpec, Proposal, SearchSpec, SearchStatus, TrialResult, keys
from contracts.liveness import DONE_PREFIX, WorkerInfo
from proposer.store import SearchExists, SearchStore, UnknownSearch

log = logging.getLogger("recycle.proposer")

# Each write checks that its search exists (KEYS[1] is the search hash): -1 means unknown.
RECORD_ONCE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 1 then
  redis.call('RPUSH', KEYS[3], ARGV[1])
  return 1
end
return 0
"""

HSETNX_IN_SEARCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
"""

HSET_IN_SEARCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

CREATE_SEARCH = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'spec', ARGV[1], 'status', ARGV[2], 'created_at', ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[4])
return 1
"""

# Leases: Redis' own clock times them (PX), so the hosts' clocks never have to agree.
# KEYS: search, lease, claims; ARGV: worker, ttl ms, replacing ('' for none), trial id.
CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] and holder ~= ARGV[3] then return holder end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[1])
return 1
"""

RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# ARGV: worker, ttl ms, '1' when done, the done marker.
END = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '1' then redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[2]) else redis.call('DEL', KEYS[1]) end
return 1
"""


def milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisStore(SearchStore):
    def __init__(self, client: redis.Redis):
        self.redis = client
        self._record_once = client.register_script(RECORD_ONCE)
        self._hsetnx_in_search = client.register_script(HSETNX_IN_SEARCH)
        self._hset_in_search = client.register_script(HSET_IN_SEARCH)
        self._create_search = client.register_script(CREATE_SEARCH)
        self._claim = client.register_script(CLAIM)
        self._renew = client.register_script(RENEW)
        self._end = client.register_script(END)

    @classmethod
    def from_url(cls, url: str) -> "RedisStore":
        # Keepalive and a health check: a Redis restart is noticed and the next call reconnects.
        return cls(redis.Redis.from_url(url, socket_keepalive=True, health_check_interval=10, socket_connect_timeout=5))

    def ping(self) -> None:
        self.redis.ping()

    # pools
    def put_pool(self, pool_id: str, pool: PoolSpec) -> None:
        self.redis.hset(keys.pools_index(), pool_id, pool.model_dump_json())

    def get_pool(self, pool_id: str) -> PoolSpec | None:
        raw = self.redis.hget(keys.pools_index(), pool_id)
        return PoolSpec.model_validate_json(raw) if raw else None

    def list_pools(self) -> dict[str, PoolSpec]:
        return {k.decode(): PoolSpec.model_validate_json(v) for k, v in sorted(self.redis.hgetall(keys.pools_index()).items())}

    # searches
    def create_search(self, search_id: str, spec: SearchSpec) -> None:
        created = self._create_search(
            keys=[keys.search(search_id), keys.searches_index()],
            args=[spec.model_dump_json(), SearchStatus.running.value, time.time(), search_id],
        )
        if not created:
            raise SearchExists(f"search {search_id!r} already exists")

    def get_search(self, search_id: str) -> SearchSpec | None:
        raw = self.redis.hget(keys.search(search_id), "spec")
        return SearchSpec.model_validate_json(raw) if raw else None

    def list_searches(self) -> list[str]:
        return [s.decode() for s in self.redis.lrange(keys.searches_index(), 0, -1)]

    def get_status(self, search_id: str) -> SearchStatus | None:
        raw = self.redis.hget(keys.search(search_id), "status")
        return SearchStatus(raw.decode()) if raw else None

    def set_status(self, search_id: str, status: SearchStatus) -> None:
        self._in_search(self._hset_in_search, search_id, keys.search(search_id), "status", SearchStatus(status).value)

    # proposals and results
    def add_proposal(self, proposal: Proposal) -> bool:
        search_id = proposal.search_id
        return self._in_search(self._hsetnx_in_search, search_id, keys.proposals(search_id), proposal.trial_id,
                               proposal.model_dump_json())

    def proposals(self, search_id: str) -> list[Proposal]:
        raw = self.redis.hgetall(keys.proposals(search_id))
        return sorted((Proposal.model_validate_json(v) for v in raw.values()), key=lambda p: p.number)

    def get_proposal(self, search_id: str, trial_id: str) -> Proposal | None:
        raw = self.redis.hget(keys.proposals(search_id), trial_id)
        return Proposal.model_validate_json(raw) if raw else None

    def mark_sent(self, search_id: str, trial_id: str, at: float) -> None:
        self._in_search(self._hset_in_search, search_id, keys.sent(search_id), trial_id, repr(at))

    def sent_at(self, search_id: str) -> dict[str, float]:
        return {k.decode(): float(v) for k, v in self.redis.hgetall(keys.sent(search_id)).items()}

    def record_result(self, result: TrialResult) -> bool:
        search_id = result.search_id
        recorded = self._record_once(
            keys=[keys.search(search_id), keys.results(search_id), keys.result_order(search_id)],
            args=[result.trial_id, result.model_dump_json()],
        )
        if recorded == -1:
            raise UnknownSearch(search_id)
        return bool(recorded)

    def _in_search(self, script, search_id: str, key: str, field: str, value: str) -> bool:
        outcome = script(keys=[keys.search(search_id), key], args=[field, value])
        if outcome == -1:
            raise UnknownSearch(search_id)
        return bool(outcome)

    def results(self, search_id: str) -> list[TrialResult]:
        order = self.redis.lrange(keys.result_order(search_id), 0, -1)
        if not order:
            return []
        raw = self.redis.hmget(keys.results(search_id), order)
        return [TrialResult.model_validate_json(r) for r in raw if r]

    def get_result(self, search_id: str, trial_id: str) -> TrialResult | None:
        raw = self.redis.hget(keys.results(search_id), trial_id)
        return TrialResult.model_validate_json(raw) if raw else None

    # liveness
    def claim_trial(self, search_id: str, trial_id: str, worker: str, ttl_s: float,
                    replacing: str | None = None) -> str | None:
        outcome = self._claim(keys=[keys.search(search_id), keys.lease(search_id, trial_id), keys.claims(search_id)],
                              args=[worker, milliseconds(ttl_s), replacing or "", trial_id])
        if outcome == -1:
            raise UnknownSearch(search_id)
        return None if outcome == 1 else outcome.decode()

    def renew_lease(self, search_id: str, trial_id: str, worker: str, ttl_s: float) -> bool:
        return bool(self._renew(keys=[keys.lease(search_id, trial_id)], args=[worker, milliseconds(ttl_s)]))

    def end_lease(self, search_id: str, trial_id: str, worker: str, ttl_s: float, done: bool) -> None:
        self._end(keys=[keys.lease(search_id, trial_id)],
                  args=[worker, milliseconds(ttl_s), "1" if done else "0", DONE_PREFIX + worker])

    def leases(self, search_id: str, trial_ids: Iterable[str]) -> dict[str, str]:
        trial_ids = list(trial_ids)
        if not trial_ids:
            return {}
        holders = self.redis.mget([keys.lease(search_id, t) for t in trial_ids])
        return {t: h.decode() for t, h in zip(trial_ids, holders) if h is not None}

    def claims(self, search_id: str) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.redis.hgetall(keys.claims(search_id)).items()}

    def drop_claim(self, search_id: str, trial_id: str) -> None:
        self.redis.hdel(keys.claims(search_id), trial_id)

    def count_reproposal(self, search_id: str, trial_id: str) -> int:
        if not self.redis.exists(keys.search(search_id)):
            raise UnknownSearch(search_id)
        return int(self.redis.hincrby(keys.reproposals(search_id), trial_id, 1))

    def beat(self, info: WorkerInfo) -> None:
        self.redis.hset(keys.workers(), info.id, info.model_dump_json())

    def workers(self) -> list[WorkerInfo]:
        raw = self.redis.hgetall(keys.workers())
        return [WorkerInfo.model_validate_json(raw[k]) for k in sorted(raw)]

    def forget_worker(self, worker_id: str) -> None:
        self.redis.hdel(keys.workers(), worker_id)


class ResultsStream:
    """Workers publish results here; the proposer reads them through a consumer group.

    An entry is acknowledged only after the proposer recorded it, so a proposer
    killed mid-way re-reads it on restart (recording is idempotent).
    """

    GROUP = "proposer"
    MAX_LENGTH = 100_000

    def __init__(self, client: redis.Redis, consumer: str = "proposer"):
        self.redis, self.consumer = client, consumer
        self.key = keys.results_stream()

    def publish(self, result: TrialResult) -> None:
        self.redis.xadd(self.key, {"result": result.model_dump_json()}, maxlen=self.MAX_LENGTH, approximate=True)

    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(self.key, self.GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def read(self, block_ms: int, count: int = 100) -> list[tuple[str, TrialResult | None]]:
        """Entries this consumer was given but never acknowledged first, then new ones.

        An entry that is not a valid TrialResult comes back as None (logged): the caller
        acknowledges it like any other, so one bad entry cannot stall the stream forever.
        """
        self.ensure_group()
        for start in ("0", ">"):
            reply = self.redis.xreadgroup(self.GROUP, self.consumer, {self.key: start}, count=count,
                                          block=None if start == "0" else block_ms)
            entries = reply[0][1] if reply else []
            if entries:
                return [(entry_id.decode(), self._parse(entry_id, fields)) for entry_id, fields in entries]
        return []

    @staticmethod
    def _parse(entry_id: bytes, fields: dict) -> TrialResult | None:
        try:
            return TrialResult.model_validate_json(fields[b"result"])
        except (KeyError, ValueError) as error:  # pydantic's ValidationError is a ValueError
            log.error("results entry %s is not a trial result, dropped: %s", entry_id.decode(), str(error)[:500])
            return None

    def ack(self, entry_id: str) -> None:
        self.redis.xack(self.key, self.GROUP, entry_id)
