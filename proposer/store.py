"""Where pools, searches, proposals and results live.

`SearchStore` is the interface; `MemoryStore` serves the embedded runtime and the
tests; a Redis store implements the same interface for the distributed runtime.
Every implementation must pass the shared contract suite in
tests/proposer/store_contract.py.

Results are keyed by trial id and the first write wins: a redelivered trial
(at-least-once delivery) is recorded once. Liveness (contracts.liveness) lives here
too: the lease a worker holds on the trial it runs, and each worker's heartbeat.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import Callable, Iterable

from contracts import PoolSpec, Proposal, SearchSpec, SearchStatus, TrialResult
from contracts.liveness import DONE_PREFIX, WorkerInfo


class SearchExists(ValueError):
    pass


class UnknownSearch(KeyError):
    pass


class SearchStore(ABC):
    """Reads of something missing return None or an empty list; writes to a search
    that was never created raise UnknownSearch."""

    @abstractmethod
    def put_pool(self, pool_id: str, pool: PoolSpec) -> None: ...

    @abstractmethod
    def get_pool(self, pool_id: str) -> PoolSpec | None: ...

    @abstractmethod
    def list_pools(self) -> dict[str, PoolSpec]: ...

    @abstractmethod
    def create_search(self, search_id: str, spec: SearchSpec) -> None:
        """Registers a search with status `running`; SearchExists if the id is taken."""

    @abstractmethod
    def get_search(self, search_id: str) -> SearchSpec | None: ...

    @abstractmethod
    def list_searches(self) -> list[str]:
        """Search ids in creation order."""

    @abstractmethod
    def get_status(self, search_id: str) -> SearchStatus | None: ...

    @abstractmethod
    def set_status(self, search_id: str, status: SearchStatus) -> None: ...

    @abstractmethod
    def add_proposal(self, proposal: Proposal) -> bool:
        """True if new; a proposal whose trial id is already stored is ignored."""

    @abstractmethod
    def proposals(self, search_id: str) -> list[Proposal]:
        """By trial number."""

    def get_proposal(self, search_id: str, trial_id: str) -> Proposal | None:
        """The stored proposal of one trial (workers check a message against it)."""
        return next((p for p in self.proposals(search_id) if p.trial_id == trial_id), None)

    @abstractmethod
    def record_result(self, result: TrialResult) -> bool:
        """True if newly recorded; a second result for the same trial id is ignored."""

    @abstractmethod
    def results(self, search_id: str) -> list[TrialResult]:
        """In the order they were recorded."""

    @abstractmethod
    def get_result(self, search_id: str, trial_id: str) -> TrialResult | None: ...

    @abstractmethod
    def mark_sent(self, search_id: str, trial_id: str, at: float) -> None:
        """When a proposal was handed to the workers (unix time): drives time limits and
        tells a restarted proposer which stored proposals never left."""

    @abstractmethod
    def sent_at(self, search_id: str) -> dict[str, float]: ...

    def ping(self) -> None:
        """Raises if the store cannot be reached."""

    # -- liveness: leases on running trials, worker heartbeats --------------------------
    @abstractmethod
    def claim_trial(self, search_id: str, trial_id: str, worker: str, ttl_s: float,
                    replacing: str | None = None) -> str | None:
        """Take the trial's lease for `worker` for `ttl_s` and note the claim: None when
        taken (the lease was free, lapsed, already `worker`'s, or held by `replacing`, a
        holder known dead). Otherwise nothing changes and the holder is returned
        (DONE_PREFIX + worker once its trial finished). UnknownSearch for no search."""

    @abstractmethod
    def renew_lease(self, search_id: str, trial_id: str, worker: str, ttl_s: float) -> bool:
        """Extend the lease by `ttl_s` if `worker` still holds it; False if it lapsed or changed hands."""

    @abstractmethod
    def end_lease(self, search_id: str, trial_id: str, worker: str, ttl_s: float, done: bool) -> None:
        """`worker` lets go of a lease it holds: `done`, it becomes a done marker for `ttl_s`
        (a late duplicate message is skipped); otherwise it is released at once (handed back)."""

    @abstractmethod
    def leases(self, search_id: str, trial_ids: Iterable[str]) -> dict[str, str]:
        """Holders of the live leases among `trial_ids`."""

    @abstractmethod
    def claims(self, search_id: str) -> dict[str, str]:
        """Trial id -> the worker that last claimed it (claims outlive their leases)."""

    @abstractmethod
    def drop_claim(self, search_id: str, trial_id: str) -> None: ...

    @abstractmethod
    def count_reproposal(self, search_id: str, trial_id: str) -> int:
        """One more lapse of the trial's lease; the count so far."""

    @abstractmethod
    def beat(self, info: WorkerInfo) -> None:
        """A worker's heartbeat: its record replaces the last one."""

    @abstractmethod
    def workers(self) -> list[WorkerInfo]:
        """Every worker's last heartbeat, by id."""

    @abstractmethod
    def forget_worker(self, worker_id: str) -> None: ...


class _Search:
    def __init__(self, spec: SearchSpec):
        self.spec = spec
        self.status = SearchStatus.running
        self.proposals: dict[str, Proposal] = {}
        self.results: dict[str, TrialResult] = {}  # dicts keep insertion (record) order
        self.sent: dict[str, float] = {}
        self.leases: dict[str, tuple[str, float]] = {}  # trial id -> (holder, expiry on the store's clock)
        self.claims: dict[str, str] = {}
        self.reproposals: dict[str, int] = {}

    def holder(self, trial_id: str, now: float) -> str | None:
        holder, expires = self.leases.get(trial_id, (None, 0.0))
        return holder if expires > now else None


class MemoryStore(SearchStore):
    """In-process and thread-safe. Stored models are frozen and shared, not copied.
    `clock` (seconds, monotonic) times the leases."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self._pools: dict[str, PoolSpec] = {}
        self._searches: dict[str, _Search] = {}
        self._workers: dict[str, WorkerInfo] = {}

    def put_pool(self, pool_id: str, pool: PoolSpec) -> None:
        with self._lock:
            self._pools[pool_id] = pool

    def get_pool(self, pool_id: str) -> PoolSpec | None:
        with self._lock:
            return self._pools.get(pool_id)

    def list_pools(self) -> dict[str, PoolSpec]:
        with self._lock:
            return dict(self._pools)

    def create_search(self, search_id: str, spec: SearchSpec) -> None:
        with self._lock:
            if search_id in self._searches:
                raise SearchExists(f"search {search_id!r} already exists")
            self._searches[search_id] = _Search(spec)

    def get_search(self, search_id: str) -> SearchSpec | None:
        with self._lock:
            search = self._searches.get(search_id)
            return search.spec if search else None

    def list_searches(self) -> list[str]:
        with self._lock:
            return list(self._searches)

    def get_status(self, search_id: str) -> SearchStatus | None:
        with self._lock:
            search = self._searches.get(search_id)
            return search.status if search else None

    def set_status(self, search_id: str, status: SearchStatus) -> None:
        with self._lock:
            self._search(search_id).status = SearchStatus(status)

    def add_proposal(self, proposal: Proposal) -> bool:
        with self._lock:
            proposals = self._search(proposal.search_id).proposals
            if proposal.trial_id in proposals:
                return False
            proposals[proposal.trial_id] = proposal
            return True

    def proposals(self, search_id: str) -> list[Proposal]:
        with self._lock:
            search = self._searches.get(search_id)
            return sorted(search.proposals.values(), key=lambda p: p.number) if search else []

    def record_result(self, result: TrialResult) -> bool:
        with self._lock:
            results = self._search(result.search_id).results
            if result.trial_id in results:
                return False
            results[result.trial_id] = result
            return True

    def results(self, search_id: str) -> list[TrialResult]:
        with self._lock:
            search = self._searches.get(search_id)
            return list(search.results.values()) if search else []

    def get_result(self, search_id: str, trial_id: str) -> TrialResult | None:
        with self._lock:
            search = self._searches.get(search_id)
            return search.results.get(trial_id) if search else None

    def mark_sent(self, search_id: str, trial_id: str, at: float) -> None:
        with self._lock:
            self._search(search_id).sent[trial_id] = at

    def sent_at(self, search_id: str) -> dict[str, float]:
        with self._lock:
            search = self._searches.get(search_id)
            return dict(search.sent) if search else {}

    def claim_trial(self, search_id: str, trial_id: str, worker: str, ttl_s: float,
                    replacing: str | None = None) -> str | None:
        with self._lock:
            search, now = self._search(search_id), self._clock()
            holder = search.holder(trial_id, now)
            if holder is not None and holder not in (worker, replacing):
                return holder
            search.leases[trial_id] = (worker, now + ttl_s)
            search.claims[trial_id] = worker
            return None

    def renew_lease(self, search_id: str, trial_id: str, worker: str, ttl_s: float) -> bool:
        with self._lock:
            search, now = self._searches.get(search_id), self._clock()
            if search is None or search.holder(trial_id, now) != worker:
                return False
            search.leases[trial_id] = (worker, now + ttl_s)
            return True

    def end_lease(self, search_id: str, trial_id: str, worker: str, ttl_s: float, done: bool) -> None:
        with self._lock:
            search, now = self._searches.get(search_id), self._clock()
            if search is None or search.holder(trial_id, now) != worker:
                return
            if done:
                search.leases[trial_id] = (DONE_PREFIX + worker, now + ttl_s)
            else:
                del search.leases[trial_id]

    def leases(self, search_id: str, trial_ids: Iterable[str]) -> dict[str, str]:
        with self._lock:
            search, now = self._searches.get(search_id), self._clock()
            if search is None:
                return {}
            return {t: h for t in trial_ids if (h := search.holder(t, now)) is not None}

    def claims(self, search_id: str) -> dict[str, str]:
        with self._lock:
            search = self._searches.get(search_id)
            return dict(search.claims) if search else {}

    def drop_claim(self, search_id: str, trial_id: str) -> None:
        with self._lock:
            if search_id in self._searches:
                self._searches[search_id].claims.pop(trial_id, None)

    def count_reproposal(self, search_id: str, trial_id: str) -> int:
        with self._lock:
            counts = self._search(search_id).reproposals
            counts[trial_id] = counts.get(trial_id, 0) + 1
            return counts[trial_id]

    def beat(self, info: WorkerInfo) -> None:
        with self._lock:
            self._workers[info.id] = info

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            return [self._workers[i] for i in sorted(self._workers)]

    def forget_worker(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def _search(self, search_id: str) -> _Search:
        try:
            return self._searches[search_id]
        except KeyError:
            raise UnknownSearch(search_id) from None
