"""The Celery worker process: the `merge_and_evaluate` task and what each process keeps.

A worker process opens a pool and builds the resident model once, then reuses
them for every trial of every search on that pool (evaluators are cached by
pool + tasks + merge). The task itself is thin: validate the payload against
the contracts and against the proposal the proposer stored, take the trial's
lease (recycle/serve/heartbeat.py: a trial running or finished elsewhere is
skipped), evaluate, publish the result to the results stream, or spool it to disk
while Redis is away (recycle/serve/spool.py). It never writes search state: the
proposer records results, exactly once per trial id.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, TypeVar

import redis
from celery.exceptions import Reject
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutting_down
from pydantic import ValidationError

from contracts import Proposal, SearchSpec, TrialResult, TrialStatus, keys
from contracts.liveness import RENEW_FRACTION
from evaluator import Evaluator
from evaluator.evaluate import worker_name
from recycle.serve.celery_app import make_celery
from recycle.serve.heartbeat import Heartbeat
from recycle.serve.spool import Spool
from recycle.settings import Settings

log = logging.getLogger("recycle.serve.worker")
settings = Settings()
app = make_celery(settings.redis_url, settings.broker_visibility_timeout_s)
# A resident model per cached evaluator; two covers alternating between two searches.
EVALUATOR_CACHE_SIZE = 2
# Pool processes of this worker (run_worker sets it before Celery forks them).
CONCURRENCY = 1
T = TypeVar("T")


class ProcessState:
    """Per-process resources, created after the fork (sockets and mmaps must not be shared)."""

    def __init__(self):
        from proposer.redis_store import RedisStore, ResultsStream
        from recycle.serve.metrics import WorkerMetrics

        self.store = RedisStore.from_url(settings.redis_url)
        self.results = ResultsStream(self.store.redis)
        self.metrics = WorkerMetrics.create(registry=None)  # multiprocess mode: values go to files
        self.device = settings.resolved_device()
        self.evaluators: OrderedDict[str, Evaluator] = OrderedDict()
        self.spool = Spool(spool_folder(), settings.spool_max_results)
        self.heartbeat = Heartbeat(self.store, worker_name(), self.device, settings.lease_ttl_s,
                                   settings.worker_shutdown_grace_s)

    def evaluator(self, spec: SearchSpec) -> Evaluator:
        key = hashlib.sha256(spec.model_dump_json(include={"pool", "tasks", "merge"}).encode()).hexdigest()
        if key in self.evaluators:
            self.evaluators.move_to_end(key)
        else:
            while len(self.evaluators) >= EVALUATOR_CACHE_SIZE:
                self.evaluators.popitem(last=False)
            self.evaluators[key] = Evaluator(spec, device=self.device, allowed_roots=settings.allowed_roots or None)
        return self.evaluators[key]


_state: ProcessState | None = None


def state() -> ProcessState:
    global _state
    if _state is None:
        _state = ProcessState()
    return _state


def spool_folder() -> Path:
    return Path(settings.data_dir) / "spool"


def threads_per_process() -> int:
    """Torch threads for one pool process: RECYCLE_WORKER_THREADS, else OMP_NUM_THREADS when
    the operator set it, else the cores this process may use divided among the pool's
    processes (as the embedded runtime shares them among its threads)."""
    if settings.worker_threads:
        return settings.worker_threads
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // CONCURRENCY)


@worker_process_init.connect
def _process_started(**_):
    import torch

    torch.set_num_threads(threads_per_process())
    forget_dead_processes()
    process = state()
    process.metrics.processes.set(1)
    log.info("worker process %d ready: %d torch threads, lease %g s", os.getpid(), torch.get_num_threads(),
             settings.lease_ttl_s)


@worker_shutting_down.connect
def _main_stopping(sig=None, how=None, **_):
    """In the main process: Celery stops taking messages; the pool processes start their grace."""
    for pid in pool_processes():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def pool_processes() -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()]
    except OSError:
        return []


def forget_dead_processes() -> None:
    """Drop the live gauges of pool processes that died without a word (SIGKILL, the OOM
    killer): the main process starts a replacement, and without this the dead one's
    `busy` and `processes` would count forever."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    from prometheus_client import multiprocess

    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid = int(os.path.basename(path).removesuffix(".db").rpartition("_")[2])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)
        except PermissionError:
            pass  # alive, someone else's


@worker_process_shutdown.connect
def _process_stopped(**_):
    from prometheus_client import multiprocess

    if _state is not None:
        _state.heartbeat.leave()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())


def failed(proposal: Proposal, reason: str) -> TrialResult:
    return TrialResult(proposal=proposal, status=TrialStatus.failed, error=reason[:4000], worker=worker_name())


def with_redis(what: str, call: Callable[[], T]) -> T:
    """`call()`, retried with backoff while Redis is out of reach (restarting, loading its
    AOF). Only reads before a trial wait like this: a finished result is spooled instead."""
    delay = 0.5
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log.warning("redis unavailable while %s (%s); retrying in %.1f s", what, error, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def deliver(process: ProcessState, result: TrialResult) -> bool:
    """Publish the result, or spool it to disk while Redis is away. True if published."""
    try:
        process.results.publish(result)
        return True
    except (redis.ConnectionError, redis.TimeoutError) as error:
        if process.spool.put(result):
            log.warning("redis unavailable while publishing the result of trial %s (%s); spooled, published when "
                        "redis is back", result.trial_id, error)
        else:
            process.metrics.spool_dropped.inc()
            log.error("redis unavailable while publishing the result of trial %s and the spool is full (%d): dropped",
                      result.trial_id, settings.spool_max_results)
        return False


@app.task(name=keys.MERGE_AND_EVALUATE_TASK, bind=True)
def merge_and_evaluate(self, payload: dict) -> None:
    process = state()
    # SIGTERM (forwarded by the main process, or sent to the whole group) starts the grace.
    # Installed here: billiard sets its own handler after worker_process_init; an idle
    # process keeps billiard's (it exits at once, which is right for it).
    if signal.getsignal(signal.SIGTERM) != process.heartbeat.begin_shutdown:
        signal.signal(signal.SIGTERM, process.heartbeat.begin_shutdown)
    try:
        proposal = Proposal.model_validate(payload)  # refuse anything the contracts do not describe
    except ValidationError as error:
        process.metrics.tasks.labels("refused").inc()
        log.error("message %s refused: not a valid proposal: %s", self.request.id, str(error).replace("\n", " ")[:1000])
        return
    spec = with_redis("reading the search", lambda: process.store.get_search(proposal.search_id))
    if spec is None:
        log.warning("trial %s belongs to no known search; dropped", proposal.trial_id)
        return
    if with_redis("reading the search status", lambda: process.store.get_status(proposal.search_id)).finished:
        return  # cancelled or done: nobody waits for this trial
    # Only what the proposer proposed runs: a message whose weights differ from the stored
    # proposal (forged, or stale from another incarnation of the search) is refused.
    stored = with_redis("reading the proposal", lambda: process.store.get_proposal(proposal.search_id, proposal.trial_id))
    if stored != proposal:
        process.metrics.tasks.labels("refused").inc()
        log.error("trial %s refused: the message does not carry the proposal the proposer stored", proposal.trial_id)
        return
    if process.heartbeat.stopping:  # SIGTERM: back to the queue for another worker
        raise Reject("the worker is stopping", requeue=True)
    if with_redis("reading the result", lambda: process.store.get_result(proposal.search_id, proposal.trial_id)):
        process.metrics.tasks.labels("skipped").inc()
        log.info("trial %s skipped: already recorded", proposal.trial_id)
        return
    holder = with_redis("taking the lease", lambda: process.heartbeat.claim(proposal))
    if holder is not None:  # a second message of a trial that runs, or just ran, elsewhere
        process.metrics.tasks.labels("skipped").inc()
        log.info("trial %s skipped: its lease is held by %s", proposal.trial_id, holder)
        return
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    log.info("trial %s started in process %d%s", proposal.trial_id, os.getpid(), " (redelivered)" if redelivered else "")
    process.metrics.busy.set(1)
    try:
        try:
            result = process.evaluator(spec).evaluate(proposal)
        except Exception as error:  # noqa: BLE001 - e.g. the pool no longer opens: the trial fails, the worker lives
            log.exception("trial %s could not be set up", proposal.trial_id)
            result = failed(proposal, f"{type(error).__name__}: {error}")
    finally:
        process.metrics.busy.set(0)
    process.metrics.tasks.labels(result.status.value).inc()
    if result.status is TrialStatus.ok:
        for phase, seconds in (("merge", result.merge_seconds), ("eval", result.eval_seconds), ("total", result.total_seconds)):
            process.metrics.trial_seconds.labels(phase).observe(seconds)
    published = deliver(process, result)
    process.heartbeat.finished(spec.pool.name, published)
    log.info("trial %s %s in process %d, result %s", proposal.trial_id, result.status.value, os.getpid(),
             "published" if published else "spooled")


def flush_spool_forever(metrics) -> None:
    """In the main process: publish spooled results whenever Redis answers; report the spool's size."""
    from proposer.redis_store import RedisStore, ResultsStream

    spool = Spool(spool_folder(), settings.spool_max_results)
    results = ResultsStream(RedisStore.from_url(settings.redis_url).redis)
    while True:
        try:
            spool.flush(results.publish)
        except (redis.ConnectionError, redis.TimeoutError):
            pass  # still away: the files wait
        metrics.spooled.set(spool.count())
        time.sleep(settings.lease_ttl_s * RENEW_FRACTION)


def run_worker(concurrency: int, metrics_port: int | None, loglevel: str = "INFO") -> None:
    """Start the metrics endpoint (multiprocess mode), the spool's flusher and the Celery worker (prefork)."""
    global CONCURRENCY
    CONCURRENCY = concurrency
    if metrics_port:
        # prometheus_client picks multiprocess mode when first imported: set the directory before.
        directory = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="recycle-metrics-"))
        shutil.rmtree(directory, ignore_errors=True)  # stale files of a previous run would add up
        os.makedirs(directory, exist_ok=True)
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server, values

        # prometheus_client chose its value class when first imported; if something the CLI
        # imports loaded it before the directory was set, choose again: metrics made from
        # now on (in the pool processes) write to the directory whatever the import order.
        values.ValueClass = values.get_value_class()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(metrics_port, registry=registry)
    from recycle.serve.metrics import WorkerMetrics

    threading.Thread(target=flush_spool_forever, args=(WorkerMetrics.create(registry=None),), name="recycle-spool",
                     daemon=True).start()
    app.worker_main(
        ["worker", "--pool=prefork", f"--concurrency={concurrency}", "-Q", keys.TRIALS_QUEUE,
         f"--loglevel={loglevel}", "-n", f"recycle-{os.getpid()}@%h", "--without-gossip", "--without-mingle"]
    )
