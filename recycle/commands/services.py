"""`recycle api`, `recycle proposer`, `recycle worker`: the long-running processes of the service."""

from __future__ import annotations

from recycle.commands.common import setup_service_logging
from recycle.errors import UsageError
from recycle.settings import Settings


def command_api(args) -> int:
    from prometheus_client import CollectorRegistry
    from waitress import serve

    from api import create_app
    from proposer.redis_store import RedisStore
    from recycle.serve.api_wiring import make_services
    from recycle.serve.metrics import ApiMetrics

    settings = Settings()
    if not settings.allowed_roots:
        raise UsageError("set RECYCLE_ALLOWED_ROOTS (a JSON list of folders pools may be read from)")
    if settings.api_token is None:
        raise UsageError("set RECYCLE_API_TOKEN: mutating calls need a bearer token")
    setup_service_logging()
    registry = CollectorRegistry()
    app = create_app(settings, RedisStore.from_url(settings.redis_url), make_services(settings), registry, ApiMetrics.create(registry))
    serve(app, host=args.host, port=args.port, threads=args.threads)
    return 0


def command_proposer(args) -> int:
    import signal

    from prometheus_client import CollectorRegistry, start_http_server

    from proposer.redis_store import RedisStore
    from recycle.serve.celery_app import make_celery
    from recycle.serve.metrics import ProposerMetrics
    from recycle.serve.proposer_service import ProposerService, celery_sender

    settings = Settings()
    setup_service_logging()
    registry = CollectorRegistry()
    metrics = ProposerMetrics.create(registry)
    if args.metrics_port:
        start_http_server(args.metrics_port, registry=registry)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    service = ProposerService(RedisStore.from_url(settings.redis_url),
                              celery_sender(make_celery(settings.redis_url, settings.broker_visibility_timeout_s)), metrics)
    service.run_forever(should_stop=lambda: bool(stopping))
    return 0


def command_worker(args) -> int:
    from recycle.serve.worker import run_worker  # imported here: metrics must see PROMETHEUS_MULTIPROC_DIR first

    setup_service_logging()
    run_worker(concurrency=args.concurrency, metrics_port=args.metrics_port)
    return 0
