"""Where pools, searches, proposals and results live.

`SearchStore` is the interface; `MemoryStore` serves the embedded runtime and the
tests; a Redis store implements the same interface for the distributed runtime.
Every implementation must pass the shared contract suite in
tests/proposer/store_contract.py.

Results are keyed by trial id and the first write wins: a redelivered trial
(at-least-once delivery) is recorded once.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

from contracts import PoolSpec, Proposal, SearchSpec, SearchStatus, TrialResult


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


class _Search:
    def __init__(self, spec: SearchSpec):
        self.spec = spec
        self.status = SearchStatus.running
        self.proposals: dict[str, Proposal] = {}
        self.results: dict[str, TrialResult] = {}  # dicts keep insertion (record) order
        self.sent: dict[str, float] = {}


class MemoryStore(SearchStore):
    """In-process and thread-safe. Stored models are frozen and shared, not copied."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pools: dict[str, PoolSpec] = {}
        self._searches: dict[str, _Search] = {}

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

    def _search(self, search_id: str) -> _Search:
        try:
            return self._searches[search_id]
        except KeyError:
            raise UnknownSearch(search_id) from None
