"""The Celery worker process: the `merge_and_evaluate` task and what each process keeps.

A worker process opens a pool and builds the resident model once, then reuses
them for every trial of every search on that pool (evaluators are cached by
pool + tasks + merge). The task itself is thin: validate the payload against
the contracts, evaluate, publish the result to the results stream. It never
writes search state: the proposer records results, exactly once per trial id.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections import OrderedDict

from celery.signals import worker_process_init, worker_process_shutdown

from contracts import Proposal, SearchSpec, TrialResult, TrialStatus, keys
from evaluator import Evaluator
from evaluator.evaluate import worker_name
from recycle.celery_app import make_celery
from recycle.settings import Settings

log = logging.getLogger("recycle.worker")
settings = Settings()
app = make_celery(settings.redis_url)
# A resident model per cached evaluator; two covers alternating between two searches.
EVALUATOR_CACHE_SIZE = 2


class ProcessState:
    """Per-process resources, created after the fork (sockets and mmaps must not be shared)."""

    def __init__(self):
        from proposer.redis_store import RedisStore, ResultsStream
        from recycle.metrics import WorkerMetrics

        self.store = RedisStore.from_url(settings.redis_url)
        self.results = ResultsStream(self.store.redis)
        self.metrics = WorkerMetrics.create(registry=None)  # multiprocess mode: values go to files
        self.device = settings.resolved_device()
        self.evaluators: OrderedDict[str, Evaluator] = OrderedDict()

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


@worker_process_init.connect
def _process_started(**_):
    state().metrics.processes.set(1)


@worker_process_shutdown.connect
def _process_stopped(**_):
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())


def failed(proposal: Proposal, reason: str) -> TrialResult:
    return TrialResult(proposal=proposal, status=TrialStatus.failed, error=reason[:4000], worker=worker_name())


@app.task(name=keys.MERGE_AND_EVALUATE_TASK)
def merge_and_evaluate(payload: dict) -> None:
    proposal = Proposal.model_validate(payload)  # refuse anything the contracts do not describe
    process = state()
    spec = process.store.get_search(proposal.search_id)
    if spec is None:
        log.warning("trial %s belongs to no known search; dropped", proposal.trial_id)
        return
    if process.store.get_status(proposal.search_id).finished:
        return  # cancelled or done: nobody waits for this trial
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
    process.results.publish(result)


def run_worker(concurrency: int, metrics_port: int | None, loglevel: str = "INFO") -> None:
    """Start the metrics endpoint (multiprocess mode) and the Celery worker (prefork)."""
    if metrics_port:
        # prometheus_client picks multiprocess mode when first imported: set the directory before.
        directory = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="recycle-metrics-"))
        shutil.rmtree(directory, ignore_errors=True)  # stale files of a previous run would add up
        os.makedirs(directory, exist_ok=True)
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(metrics_port, registry=registry)
    app.worker_main(
        ["worker", "--pool=prefork", f"--concurrency={concurrency}", "-Q", keys.TRIALS_QUEUE,
         f"--loglevel={loglevel}", "-n", f"recycle-{os.getpid()}@%h", "--without-gossip", "--without-mingle"]
    )
