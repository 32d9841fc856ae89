"""Bearer-token checks: mutating calls always need it, reads only when not public."""

from __future__ import annotations

import hmac
from functools import wraps

from flask import current_app, request

from api.errors import ApiError


def token_ok() -> bool:
    expected = current_app.config["RECYCLE_SETTINGS"].api_token
    if expected is None:
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    # Constant-time compare: response timing must not leak how much of a guess was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


def require_token(view):
    @wraps(view)
    def wrapped(*args, **kwargs):
        if not token_ok():
            raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
        return view(*args, **kwargs)

    return wrapped


def require_read_access(view):
    @wraps(view)
    def wrapped(*args, **kwargs):
        if not current_app.config["RECYCLE_SETTINGS"].public_reads and not token_ok():
            raise ApiError(401, "this server requires a bearer token for reads too")
        return view(*args, **kwargs)

    return wrapped
