"""Every error leaves the API as JSON: {"error": message} with a 4xx/5xx status."""

from __future__ import annotations

import json

from flask import Flask, jsonify
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    def __init__(self, status: int, message: str, **details):
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


def validation_message(error: ValidationError) -> str:
    """One line per problem, naming the field path: what a user needs to fix the request."""
    lines = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"]) or "body"
        lines.append(f"{where}: {problem['msg']}")
    return "; ".join(lines)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return jsonify({"error": error.message, **error.details}), error.status

    @app.errorhandler(ValidationError)
    def _validation(error: ValidationError):
        return jsonify({"error": validation_message(error)}), 422

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        # Werkzeug's own response, with a JSON body: it keeps the headers the status needs
        # (a 405 must list the allowed methods in Allow, RFC 9110).
        message = error.description or error.name
        if error.code == 413:  # Werkzeug's text does not say which limit
            message = f"the request body is larger than the limit of {app.config.get('MAX_CONTENT_LENGTH')} bytes"
        response = error.get_response()
        response.set_data(json.dumps({"error": message}))
        response.content_type = "application/json"
        return response

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def _store_unavailable(error: Exception):
        # Redis restarting or out of reach: a temporary condition, not a bug; retry later.
        app.logger.warning("store unavailable: %s", error)
        response = jsonify({"error": "the store (Redis) is unavailable; retry shortly"})
        response.headers["Retry-After"] = "5"
        return response, 503

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        app.logger.exception("unhandled error")
        return jsonify({"error": "internal error"}), 500
