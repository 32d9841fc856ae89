"""HTTP routes: pools, searches, trials, fronts, lifecycle, export."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time

from flask import Blueprint, current_app, jsonify, request

from api.auth import require_read_access, require_token
from api.errors import ApiError
from api.openapi import openapi_document
from api.schemas import ExportRequest, PoolCreate, SearchCreate
from api.services import InputError
from api.history import search_history
from api.views import search_view, trials_page
from contracts import SearchStatus, TrialStatus
from proposer import summarize_search

blueprint = Blueprint("api", __name__)

# Which lifecycle action is allowed from which status, and where it leads.
TRANSITIONS = {
    "pause": ({SearchStatus.running}, SearchStatus.paused),
    "resume": ({SearchStatus.paused}, SearchStatus.running),
    "cancel": ({SearchStatus.running, SearchStatus.paused}, SearchStatus.cancelled),
}


def store():
    return current_app.config["RECYCLE_STORE"]


def services():
    return current_app.config["RECYCLE_SERVICES"]


def stale_after_s() -> float:
    """A worker silent this long is not alive (the lease TTL)."""
    return current_app.config["RECYCLE_SETTINGS"].lease_ttl_s


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def json_body() -> dict:
    """The body as a JSON object: strict JSON (Python's parser would take NaN and Infinity),
    and nesting too deep for the parser is a 400 like any other malformed body, not a 500."""
    if not request.is_json:
        raise ApiError(400, "the request body must be a JSON object (Content-Type: application/json)")
    try:
        body = json.loads(request.get_data(), parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(400, "the request body is not usable JSON: nested too deeply") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ApiError(400, f"the request body is not valid JSON: {str(error)[:200]}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object (Content-Type: application/json)")
    return body


def int_arg(name: str, default: int) -> int:
    """A query parameter that must be an integer when given (no silent fallback to the default)."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        if re.fullmatch(r"-?[0-9]+", raw):  # int() alone would also take " 7", "1_000", "٣"
            return int(raw)
    except ValueError:  # more digits than Python converts
        pass
    raise ApiError(400, f"query parameter {name} must be an integer, got {raw[:40]!r}")


def pool_id_for(pool) -> str:
    """Content-addressed: posting the same pool twice gives the same id."""
    return "pool-" + hashlib.sha256(pool.model_dump_json().encode()).hexdigest()[:16]


def find_search(search_id: str):
    spec = store().get_search(search_id)
    if spec is None:
        raise ApiError(404, f"no search {search_id!r}")
    return spec


@blueprint.get("/healthz")
def healthz():
    store().ping()
    return jsonify({"status": "ok"})


@blueprint.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())


@blueprint.post("/v1/pools")
@require_token
def create_pool():
    pool = PoolCreate.model_validate(json_body())
    try:
        info = services().inspect_pool(pool)
    except InputError as error:
        raise ApiError(422, str(error)) from None
    pool_id = pool_id_for(pool)
    store().put_pool(pool_id, pool)
    return jsonify({"id": pool_id, "pool": pool.model_dump(mode="json"), **info}), 201


@blueprint.get("/v1/pools")
@require_read_access
def list_pools():
    return jsonify({"pools": [{"id": i, "pool": p.model_dump(mode="json")} for i, p in store().list_pools().items()]})


@blueprint.get("/v1/pools/<pool_id>")
@require_read_access
def get_pool(pool_id: str):
    pool = store().get_pool(pool_id)
    if pool is None:
        raise ApiError(404, f"no pool {pool_id!r}")
    return jsonify({"id": pool_id, "pool": pool.model_dump(mode="json")})


@blueprint.post("/v1/searches")
@require_token
def create_search():
    request_body = SearchCreate.model_validate(json_body())
    pool = store().get_pool(request_body.pool_id)
    if pool is None:
        raise ApiError(404, f"no pool {request_body.pool_id!r}: post it to /v1/pools first")
    spec = request_body.to_spec(pool)
    try:
        services().check_search(spec)
    except InputError as error:
        raise ApiError(422, str(error)) from None
    search_id = time.strftime("s%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    store().create_search(search_id, spec)
    store().set_status(search_id, SearchStatus.running)
    return jsonify(search_view(store(), search_id, spec, stale_after_s())), 201


@blueprint.get("/v1/searches")
@require_read_access
def list_searches():
    views = []
    for search_id in store().list_searches():
        spec = store().get_search(search_id)
        views.append(search_view(store(), search_id, spec, stale_after_s()))
    return jsonify({"searches": views})


@blueprint.get("/v1/searches/<search_id>")
@require_read_access
def get_search(search_id: str):
    return jsonify(search_view(store(), search_id, find_search(search_id), stale_after_s()))


@blueprint.get("/v1/searches/<search_id>/trials")
@require_read_access
def list_trials(search_id: str):
    spec = find_search(search_id)
    offset, limit = int_arg("offset", 0), int_arg("limit", 1000)
    if offset < 0 or not 1 <= limit <= 10_000:
        raise ApiError(400, "offset must be >= 0 and limit between 1 and 10000")
    return jsonify(trials_page(store(), search_id, spec, offset, limit))


@blueprint.get("/v1/searches/<search_id>/history")
@require_read_access
def get_history(search_id: str):
    return jsonify(search_history(store(), search_id, find_search(search_id)))


@blueprint.get("/v1/searches/<search_id>/front")
@require_read_access
def get_front(search_id: str):
    spec = find_search(search_id)
    summary = summarize_search(spec, store().proposals(search_id), store().results(search_id))
    front_ids = set(summary["front"])
    results = [r for r in store().results(search_id) if r.trial_id in front_ids]
    return jsonify({"hypervolume": summary["hypervolume"], "front": [r.model_dump(mode="json") for r in results]})


@blueprint.get("/v1/workers")
@require_read_access
def list_workers():
    """Every worker process's last heartbeat; one silent past the lease TTL is not alive."""
    stale, now = stale_after_s(), time.time()
    return jsonify({"workers": [w.view(now, stale) for w in store().workers()], "stale_after_s": stale})


# Only the three actions match: a catch-all <action> would also claim POST .../trials and
# .../front (401/404 instead of 405, and an Allow header listing POST for them).
@blueprint.post("/v1/searches/<search_id>/<any(pause, resume, cancel):action>")
@require_token
def change_status(search_id: str, action: str):
    if action not in TRANSITIONS:
        raise ApiError(404, f"unknown action {action!r}; use pause, resume or cancel (or POST .../export)")
    find_search(search_id)
    allowed_from, target = TRANSITIONS[action]
    current = store().get_status(search_id)
    if current not in allowed_from:
        raise ApiError(409, f"cannot {action} a search that is {current.value}")
    store().set_status(search_id, target)
    return jsonify({"id": search_id, "status": target.value})


@blueprint.post("/v1/searches/<search_id>/export")
@require_token
def export(search_id: str):
    spec = find_search(search_id)
    trial_id = ExportRequest.model_validate(json_body()).trial_id
    result = store().get_result(search_id, trial_id)
    if result is None:
        raise ApiError(404, f"search {search_id!r} has no result for trial {trial_id!r}")
    if result.status is not TrialStatus.ok:
        raise ApiError(409, f"trial {trial_id!r} failed ({result.error}); only successful trials can be exported")
    try:
        path = services().export_trial(search_id, spec, result)
    except InputError as error:
        raise ApiError(409, str(error)) from None
    return jsonify({"search": search_id, "trial_id": trial_id, "path": str(path)}), 201
