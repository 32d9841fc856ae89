"""Flask app factory (Flask's pattern: no global app, settings and store passed in)."""

from __future__ import annotations

import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.errors import register_error_handlers
from api.pages import blueprint as pages
from api.routes import blueprint
from api.services import Services

MAX_BODY_BYTES = 1024 * 1024


def create_app(settings, store, services: Services, registry: CollectorRegistry | None = None, metrics=None) -> Flask:
    """`metrics` is an ApiMetrics bound to `registry`; both optional (then /metrics is empty)."""
    # No app-level static or template folder: the pages blueprint serves its own from
    # the package, never files from wherever the server happens to be started.
    app = Flask("recycle.api", static_folder=None, template_folder=None)
    app.config.update(
        RECYCLE_SETTINGS=settings,
        RECYCLE_STORE=store,
        RECYCLE_SERVICES=services,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        JSON_SORT_KEYS=False,
    )
    registry = registry or CollectorRegistry()
    register_error_handlers(app)
    app.register_blueprint(blueprint)
    app.register_blueprint(pages)

    @app.get("/metrics")
    def metrics_endpoint():
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    if metrics is not None:

        @app.before_request
        def _start_timer():
            g.started = time.perf_counter()

        @app.after_request
        def _observe(response):
            route = request.url_rule.rule if request.url_rule else "unmatched"
            metrics.requests.labels(request.method, route, str(response.status_code)).inc()
            metrics.request_seconds.labels(route).observe(time.perf_counter() - g.get("started", time.perf_counter()))
            return response

    return app
