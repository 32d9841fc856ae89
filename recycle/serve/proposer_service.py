"""The proposer service: keeps every running search's workers busy.

Loop: read finished trials from the results stream and record them (each trial
id once), mark trials that outlived their time limit as failed, send again the
trials whose worker's lease lapsed (contracts/liveness.py), then top every
running search up to `concurrency` trials in flight: a new proposal goes out
the moment any result comes back, with no generation barrier. All state lives
in Redis; a restarted service rebuilds each search's strategy by replaying the
stored history and carries on.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import redis
from kombu.exceptions import OperationalError

from contracts import Proposal, SearchSpec, SearchStatus, TrialResult, TrialStatus, keys
from proposer import SearchDriver
from proposer.redis_store import RedisStore, ResultsStream
from proposer.store import UnknownSearch
from recycle.serve.metrics import ProposerMetrics
from recycle.settings import Settings

log = logging.getLogger("recycle.proposer")
Send = Callable[[Proposal, SearchSpec], None]
# Redis (store and broker) out of reach: the store's client raises redis' errors (a Redis
# still loading its AOF answers BusyLoadingError, a ConnectionError), Celery's producer
# raises kombu's OperationalError once its own short retries are spent.
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, OperationalError)
# A worker record silent for this many lease TTLs (an hour by default) is dropped from the
# registry: long enough to read who vanished, not tuned.
FORGET_AFTER_TTLS = 120


def celery_sender(celery_app) -> Send:
    def send(proposal: Proposal, spec: SearchSpec) -> None:
        celery_app.send_task(
            keys.MERGE_AND_EVALUATE_TASK,
            args=[proposal.model_dump(mode="json")],
            queue=keys.TRIALS_QUEUE,
            task_id=proposal.trial_id,
            # The soft limit raises inside the trial (reported as a failed trial); the hard
            # limit kills a process stuck where the soft one cannot reach (e.g. in C code).
            soft_time_limit=spec.trial_timeout_s,
            time_limit=spec.trial_timeout_s + 30,
        )

    return send


class ProposerService:
    def __init__(self, store: RedisStore, send: Send, metrics: ProposerMetrics, clock=time.time,
                 settings: Settings | None = None):
        self.store, self.send, self.metrics, self.clock = store, send, metrics, clock
        settings = settings or Settings()
        self.lease_ttl_s, self.max_reproposals = settings.lease_ttl_s, settings.max_reproposals
        self.results = ResultsStream(store.redis)
        self.drivers: dict[str, SearchDriver] = {}
        # Leases are judged only after one whole TTL of watching (since start, or since Redis
        # came back): workers get that long to renew, and to publish what they spooled.
        self.watching_since = clock()

    # -- one pass -------------------------------------------------------------------
    def step(self, block_ms: int = 500) -> None:
        self.record_results(block_ms)
        for search_id in self.store.list_searches():
            status = self.store.get_status(search_id)
            if status is None or status.finished:
                self.forget(search_id)
                continue
            driver = self.driver(search_id)
            self.fail_overdue(driver)
            self.resend_lapsed(driver)
            self.export_gauges(driver)
            if driver.finished:
                self.store.set_status(search_id, SearchStatus.completed)
                log.info("search %s completed: %s trials", search_id, driver.summary()["done"])
                self.forget(search_id)
                continue
            if status is SearchStatus.running:
                self.top_up(driver)
                self.metrics.in_flight.labels(search_id).set(driver.in_flight)
        self.metrics.queue_depth.set(self.store.redis.llen(keys.TRIALS_QUEUE))
        self.watch_workers()

    def driver(self, search_id: str) -> SearchDriver:
        """The search's driver; built on first sight by replaying its stored history (resume)."""
        if search_id not in self.drivers:
            spec = self.store.get_search(search_id)
            driver = SearchDriver(search_id, spec, self.store)
            self.drivers[search_id] = driver
            self.send_unsent(driver)
            log.info("search %s loaded: %s", search_id, {k: v for k, v in driver.summary().items() if k in ("proposed", "done", "failed")})
        return self.drivers[search_id]

    def forget(self, search_id: str) -> None:
        if self.drivers.pop(search_id, None) is not None:
            self.metrics.in_flight.labels(search_id).set(0)

    # -- results --------------------------------------------------------------------
    def record_results(self, block_ms: int) -> None:
        for entry_id, result in self.results.read(block_ms):
            if result is not None:
                try:
                    self.record(result)
                except (ValueError, UnknownSearch) as error:
                    # A result no search can take (a trial it never proposed, scores missing an
                    # objective): dropped and acknowledged. Left in the stream it would be read
                    # again on every pass and stop the proposer for good.
                    self.metrics.errors.labels("proposer", "bad_result").inc()
                    log.error("result for trial %s dropped: %s", result.trial_id, error)
            else:
                self.metrics.errors.labels("proposer", "bad_result").inc()
            self.results.ack(entry_id)

    def record(self, result: TrialResult) -> None:
        status = self.store.get_status(result.search_id)
        if status is None:
            return
        # A finished search keeps late results for the record, but its strategy is gone.
        newly = self.store.record_result(result) if status.finished else self.driver(result.search_id).record(result)
        if newly:
            self.metrics.trials.labels(result.search_id, result.status.value).inc()
            if result.status is TrialStatus.failed:
                self.metrics.errors.labels("worker", "trial_failed").inc()
                log.warning("trial %s failed: %s", result.trial_id, result.error)

    def fail_overdue(self, driver: SearchDriver) -> None:
        """A trial past its time limit is recorded as failed; a late real result is then a duplicate."""
        limit = driver.spec.trial_timeout_s
        sent = self.store.sent_at(driver.search_id)
        for proposal in driver.pending():
            started = sent.get(proposal.trial_id)
            if started is not None and self.clock() - started > limit:
                self.record(TrialResult(proposal=proposal, status=TrialStatus.failed,
                                        error=f"timed out: no result within {limit:g} s", worker="proposer"))

    # -- liveness -------------------------------------------------------------------
    def resend_lapsed(self, driver: SearchDriver) -> None:
        """A trial claimed by a worker whose lease is gone (the worker died, or handed it back
        on shutdown) goes out again under the same trial id, at most `max_reproposals`
        times; then it is recorded as failed with the reason. A finished trial keeps a done
        marker as its lease, so only a trial with neither lease nor result lapses."""
        if self.clock() - self.watching_since < self.lease_ttl_s:
            return
        pending = {p.trial_id: p for p in driver.pending()}
        claims = {t: w for t, w in self.store.claims(driver.search_id).items() if t in pending}
        if not claims:
            return
        live = self.store.leases(driver.search_id, claims)
        for trial_id, worker in claims.items():
            if trial_id in live:
                continue
            proposal = pending[trial_id]
            lapses = self.store.count_reproposal(driver.search_id, trial_id)
            if lapses > self.max_reproposals:
                self.record(TrialResult(proposal=proposal, status=TrialStatus.failed, worker="proposer",
                                        error=f"lost its worker {lapses} times (last {worker}): no lease renewal "
                                              f"for {self.lease_ttl_s:g} s; max_reproposals is {self.max_reproposals}"))
                continue
            self.store.drop_claim(driver.search_id, trial_id)
            log.warning("trial %s: the lease of %s lapsed; sent again (%d of at most %d)", trial_id, worker, lapses,
                        self.max_reproposals)
            self.metrics.reproposed.labels(driver.search_id).inc()
            self.dispatch(driver, proposal)

    def watch_workers(self) -> None:
        """The recycle_workers gauges; records silent for FORGET_AFTER_TTLS lease TTLs are dropped."""
        now, counts = self.clock(), {"alive": 0, "busy": 0, "stale": 0}
        for worker in self.store.workers():
            if now - worker.last_heartbeat > FORGET_AFTER_TTLS * self.lease_ttl_s:
                self.store.forget_worker(worker.id)
            elif worker.alive(now, self.lease_ttl_s):
                counts["alive"] += 1
                counts["busy"] += worker.current_trial is not None
            else:
                counts["stale"] += 1
        for state, count in counts.items():
            self.metrics.workers.labels(state).set(count)

    # -- proposals ------------------------------------------------------------------
    def top_up(self, driver: SearchDriver) -> None:
        free = driver.spec.concurrency - driver.in_flight
        if free <= 0:
            return
        started = time.perf_counter()
        proposals = driver.propose(free)
        if proposals:
            self.metrics.ask_seconds.observe((time.perf_counter() - started) / len(proposals))
        for proposal in proposals:
            self.dispatch(driver, proposal)

    def dispatch(self, driver: SearchDriver, proposal: Proposal) -> None:
        self.send(proposal, driver.spec)
        self.store.mark_sent(driver.search_id, proposal.trial_id, self.clock())

    def send_unsent(self, driver: SearchDriver) -> None:
        """Proposals stored but never handed to the broker (the service died in between)."""
        sent = self.store.sent_at(driver.search_id)
        for proposal in driver.pending():
            if proposal.trial_id not in sent:
                self.dispatch(driver, proposal)

    def export_gauges(self, driver: SearchDriver) -> None:
        summary = driver.summary()
        self.metrics.in_flight.labels(driver.search_id).set(driver.in_flight)
        if summary.get("best"):
            self.metrics.best_macro.labels(driver.search_id).set(summary["best"]["macro_average"])
        if summary.get("hypervolume") is not None:
            self.metrics.hypervolume.labels(driver.search_id).set(summary["hypervolume"])

    # -- forever --------------------------------------------------------------------
    def run_forever(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        backoff = 0.5
        while not should_stop():
            try:
                self.step()
                if backoff > 0.5:
                    log.info("redis reachable again; searches reloaded from the store")
                backoff = 0.5
            except UNAVAILABLE as error:
                # Redis restarting: wait and retry. A pass cut short may have stored a proposal
                # it never sent (and so never times out): drop the drivers, so each search is
                # rebuilt from the store once Redis is back, which sends what never left.
                self.drivers.clear()
                self.watching_since = self.clock() + backoff  # leases lapsed meanwhile are not the workers' fault
                self.metrics.errors.labels("proposer", "redis_unavailable").inc()
                log.warning("redis unavailable (%s); retrying in %.1f s", error, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
