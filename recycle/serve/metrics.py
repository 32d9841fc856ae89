"""Every Prometheus metric recycle exports, defined in one place.

Each process builds the metrics it owns into a registry it is handed (tests
pass a private CollectorRegistry). Celery's prefork children share one
endpoint through prometheus_client's multiprocess mode
(PROMETHEUS_MULTIPROC_DIR), which is why the worker gauges declare how their
per-process values combine.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Trials on CPU take seconds, on GPU well under one; merges take milliseconds.
TRIAL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


@dataclass
class WorkerMetrics:
    tasks: Counter  # executions, redeliveries included; skipped / handed_back messages too
    trial_seconds: Histogram
    busy: Gauge  # 1 while a process is inside a trial
    processes: Gauge  # 1 per live worker process: busy fraction = sum(busy) / sum(processes)
    spooled: Gauge  # results on disk waiting for Redis (set by the worker's main process)
    spool_dropped: Counter  # results lost because the spool was full

    @classmethod
    def create(cls, registry: CollectorRegistry | None) -> "WorkerMetrics":
        return cls(
            tasks=Counter("recycle_worker_tasks", "Trial executions by workers, by outcome", ["status"], registry=registry),
            trial_seconds=Histogram(
                "recycle_trial_seconds", "Time per trial phase (merge, eval, total)", ["phase"],
                buckets=TRIAL_BUCKETS, registry=registry,
            ),
            busy=Gauge("recycle_worker_busy", "Worker processes inside a trial", registry=registry, multiprocess_mode="livesum"),
            processes=Gauge("recycle_worker_processes", "Live worker processes", registry=registry, multiprocess_mode="livesum"),
            # Only the main process sets it; its pool processes' zeros do not change the max.
            spooled=Gauge("recycle_worker_spooled_results", "Finished results in the on-disk spool, waiting for Redis",
                          registry=registry, multiprocess_mode="max"),
            spool_dropped=Counter("recycle_worker_spool_dropped", "Results dropped because the spool was full",
                                  registry=registry),
        )


@dataclass
class ProposerMetrics:
    trials: Counter  # each trial counted once, when its result is first seen
    in_flight: Gauge
    queue_depth: Gauge
    best_macro: Gauge
    hypervolume: Gauge
    ask_seconds: Histogram
    errors: Counter
    workers: Gauge  # by state: alive, busy (alive and inside a trial), stale (silent past the lease TTL)
    reproposed: Counter  # trials sent again because their lease lapsed

    @classmethod
    def create(cls, registry: CollectorRegistry | None) -> "ProposerMetrics":
        return cls(
            trials=Counter("recycle_trials", "Trials recorded, by search and status", ["search", "status"], registry=registry),
            in_flight=Gauge("recycle_trials_in_flight", "Proposals sent and not yet answered", ["search"], registry=registry),
            queue_depth=Gauge("recycle_queue_depth", "Trial messages waiting in the broker queue", registry=registry),
            best_macro=Gauge(
                "recycle_best_macro_average", "Best normalized macro-average loss (lower is better; 0 = best single per task) on the search split",
                ["search"], registry=registry,
            ),
            hypervolume=Gauge("recycle_hypervolume", "Hypervolume of the Pareto front (search split)", ["search"], registry=registry),
            ask_seconds=Histogram(
                "recycle_proposer_ask_seconds", "Time for the strategy to propose one trial",
                buckets=HTTP_BUCKETS, registry=registry,
            ),
            errors=Counter("recycle_errors", "Errors by component and kind", ["component", "kind"], registry=registry),
            workers=Gauge("recycle_workers", "Worker processes by heartbeat state (alive, busy, stale)", ["state"],
                          registry=registry),
            reproposed=Counter("recycle_trials_reproposed", "Trials sent again because their worker's lease lapsed",
                               ["search"], registry=registry),
        )


@dataclass
class ApiMetrics:
    requests: Counter
    request_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry | None) -> "ApiMetrics":
        return cls(
            requests=Counter("recycle_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry),
            request_seconds=Histogram(
                "recycle_http_request_seconds", "HTTP request latency", ["route"], buckets=HTTP_BUCKETS, registry=registry
            ),
        )
