"""What a worker process tells the others while it lives: its heartbeat, the lease of
the trial it runs, and, on SIGTERM, that it stops (contracts/liveness.py).

One daemon thread per pool process renews both every `ttl_s * RENEW_FRACTION` seconds.
Torch releases the GIL in its kernels, so a long trial does not starve it. After
SIGTERM the process takes no new trial; if its running trial is not done within the
grace, the thread releases the lease (the proposer sends the trial again at once) and
ends the process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import redis

from contracts import Proposal
from contracts.liveness import RENEW_FRACTION, TrialRef, WorkerInfo
from proposer.store import SearchStore

log = logging.getLogger("recycle.serve.worker")
# Exit status of a process that handed its trial back ("temporary failure": try again).
EX_TEMPFAIL = 75
# An idle process still alive this long after SIGTERM ends itself (Celery normally ends it first).
IDLE_EXIT_S = 2.0
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)


def holder_is_dead_here(holder: str) -> bool:
    """A lease held by a process of this host that no longer exists (a pool process
    SIGKILLed, replaced by its worker): its trial may be taken over at once."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Heartbeat:
    def __init__(self, store: SearchStore, worker_id: str, device: str, ttl_s: float, grace_s: float):
        self.store, self.worker_id, self.device = store, worker_id, device
        self.ttl_s, self.grace_s = ttl_s, grace_s
        self.interval_s = ttl_s * RENEW_FRACTION
        self.pools: set[str] = set()
        self.trials_done = 0
        self.current: TrialRef | None = None
        self.idle_since = time.monotonic()
        self.stopping_since: float | None = None
        self._lock = threading.Lock()
        self._writing = threading.Lock()  # a heartbeat and leaving never cross
        self._left = False
        self._wake = threading.Event()
        self._reachable = True
        self._lost: TrialRef | None = None  # a lease another worker took over: not fought for
        threading.Thread(target=self._run, name="recycle-heartbeat", daemon=True).start()

    # -- the trial ------------------------------------------------------------------
    def claim(self, proposal: Proposal) -> str | None:
        """Take the trial's lease; None when taken, else who holds it (the trial is skipped)."""
        search_id, trial_id = proposal.search_id, proposal.trial_id
        holder = self.store.claim_trial(search_id, trial_id, self.worker_id, self.ttl_s)
        if holder is not None and holder_is_dead_here(holder):
            log.info("trial %s: its lease holder %s is dead; taken over", trial_id, holder)
            holder = self.store.claim_trial(search_id, trial_id, self.worker_id, self.ttl_s, replacing=holder)
        if holder is None:
            with self._lock:
                self.current = TrialRef(search_id=search_id, trial_id=trial_id)
            self._beat()
        return holder

    def finished(self, pool: str, published: bool) -> None:
        """The trial is over. Published: its lease becomes a done marker. Spooled (Redis
        away): nothing can be written, and the lease lapses on its own."""
        with self._lock:
            ref, self.current = self.current, None
            self.idle_since = time.monotonic()
            self.pools.add(pool)
            self.trials_done += 1
        if ref is not None and published:
            try:
                self.store.end_lease(ref.search_id, ref.trial_id, self.worker_id, self.ttl_s, done=True)
            except UNREACHABLE:
                pass
        self._wake.set()

    # -- shutdown -------------------------------------------------------------------
    def begin_shutdown(self, *_) -> None:
        """SIGTERM (a signal handler: it only notes the time and wakes the thread)."""
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
            self._wake.set()

    @property
    def stopping(self) -> bool:
        return self.stopping_since is not None

    def leave(self) -> None:
        """The process ends cleanly: its record goes (a dead one would show as stale)."""
        with self._writing:
            self._left = True
            try:
                self.store.forget_worker(self.worker_id)
            except UNREACHABLE:
                pass

    # -- the thread -----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._beat()
            self._renew()
            self._wake.wait(self._check_shutdown())
            self._wake.clear()

    def _beat(self) -> None:
        with self._lock:
            info = WorkerInfo(id=self.worker_id, host=socket.gethostname(), device=self.device, pools=tuple(sorted(self.pools)),
                              current_trial=self.current, last_heartbeat=time.time(), trials_done=self.trials_done)
        try:
            with self._writing:
                if not self._left:
                    self.store.beat(info)
            if not self._reachable:
                log.info("heartbeat: redis reachable again")
            self._reachable = True
        except UNREACHABLE as error:
            if self._reachable:
                log.warning("heartbeat: redis unavailable (%s); the lease will lapse if this lasts", error)
            self._reachable = False

    def _renew(self) -> None:
        ref = self.current
        if ref is None or not self._reachable or ref == self._lost:
            return
        try:
            if self.store.renew_lease(ref.search_id, ref.trial_id, self.worker_id, self.ttl_s) or self.current != ref:
                return
            # Lapsed while Redis was out of reach (a restarted Redis drops expired keys): take it
            # again unless the trial went to another worker meanwhile.
            holder = self.store.claim_trial(ref.search_id, ref.trial_id, self.worker_id, self.ttl_s)
            if holder is None:
                log.info("trial %s: lease taken again after redis was out of reach", ref.trial_id)
            else:
                self._lost = ref
                log.warning("trial %s: lease lost to %s while redis was out of reach; the first result counts",
                            ref.trial_id, holder)
        except UNREACHABLE:
            pass

    def _check_shutdown(self) -> float:
        """Ends the process when its time after SIGTERM is up; else seconds to the next look."""
        if self.stopping_since is None:
            return self.interval_s
        now = time.monotonic()
        waited, idle = now - self.stopping_since, now - max(self.stopping_since, self.idle_since)
        ref = self.current
        if ref is None and idle >= IDLE_EXIT_S:  # time for Celery to hear the last trial ended
            self.leave()
            os._exit(0)
        if ref is not None and waited >= self.grace_s:
            log.warning("trial %s not done %.0f s after SIGTERM: handed back", ref.trial_id, waited)
            try:
                self.store.end_lease(ref.search_id, ref.trial_id, self.worker_id, self.ttl_s, done=False)
            except UNREACHABLE:
                pass  # it lapses on its own
            self.leave()
            logging.shutdown()
            os._exit(EX_TEMPFAIL)
        return min(self.interval_s, max(0.05, self.grace_s - waited if ref else IDLE_EXIT_S - idle))
