"""Every error leaves the API as JSON: {"error": message} with a 4xx/5xx status."""

from __future__ import annotations

from flask import Flask, jsonify
from pydantic import ValidationError
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
        return jsonify({"error": error.description or error.name}), error.code

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        app.logger.exception("unhandled error")
        return jsonify({"error": "internal error"}), 500
