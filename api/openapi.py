"""The OpenAPI 3.1 document, with request/response schemas generated from the pydantic models."""

from __future__ import annotations

from functools import cache

from pydantic.json_schema import models_json_schema

from api.schemas import ExportRequest, PoolCreate, SearchCreate
from contracts import TrialResult

REF = "#/components/schemas/{model}"
TRIAL_ROW = {"$ref": REF.format(model="TrialRow")}


def ref(name: str) -> dict:
    return {"$ref": REF.format(model=name)}


def body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def answer(description: str, schema: dict | None = None) -> dict:
    content = {"application/json": {"schema": schema or {"type": "object"}}}
    return {"description": description, "content": content}


ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
ERRORS = {
    "400": answer("malformed request", ERROR),
    "401": answer("missing or wrong bearer token", ERROR),
    "404": answer("not found", ERROR),
    "413": answer("body too large", ERROR),
    "422": answer("invalid input: the message names the problem", ERROR),
    "503": answer("the store (Redis) is unavailable; retry shortly", ERROR),
}
WORKER = {
    "type": "object",
    "required": ["id", "host", "device", "pools", "current_trial", "last_heartbeat", "alive", "trials_done"],
    "properties": {
        "id": {"type": "string"}, "host": {"type": "string"}, "device": {"type": "string"},
        "pools": {"type": "array", "items": {"type": "string"}},
        "current_trial": {"oneOf": [{"type": "null"}, {"type": "object", "required": ["search_id", "trial_id"], "properties": {
            "search_id": {"type": "string"}, "trial_id": {"type": "string"}}}]},
        "last_heartbeat": {"type": "number", "description": "unix time"},
        "alive": {"type": "boolean"}, "trials_done": {"type": "integer"},
    },
}
WORKERS = {"type": "object", "required": ["workers", "stale_after_s"],
           "properties": {"workers": {"type": "array", "items": WORKER}, "stale_after_s": {"type": "number"}}}
SEARCH_ID = {"name": "search_id", "in": "path", "required": True, "schema": {"type": "string"}}
POOL_ID = {"name": "pool_id", "in": "path", "required": True, "schema": {"type": "string"}}
BEARER = [{"bearer": []}]


def operation(summary: str, responses: dict, request: dict | None = None, params=(), secured=False, errors=(),
              store=True) -> dict:
    """`store`: the operation reads or writes the store, so it answers 503 while Redis is down."""
    errors = (*errors, "503") if store else errors
    op = {"summary": summary, "responses": {**responses, **{code: ERRORS[code] for code in errors}}}
    if request:
        op["requestBody"] = body(request)
    if params:
        op["parameters"] = list(params)
    if secured:
        op["security"] = BEARER
    return op


@cache
def openapi_document() -> dict:
    _, schemas = models_json_schema(
        [(PoolCreate, "validation"), (SearchCreate, "validation"), (ExportRequest, "validation"), (TrialResult, "serialization")],
        ref_template=REF,
    )
    # MergeSpec's model validator, said in JSON Schema: a merge against a base needs
    # "normalize": false (pydantic does not derive this from a validator).
    schemas["$defs"]["MergeSpec"].update({
        "if": {"required": ["base"], "properties": {"base": {"type": "string"}}},
        "then": {"required": ["normalize"], "properties": {"normalize": {"const": False}}},
    })
    # A trial as the trials page lists it (api.views.trial_row): the stored result, plus what the
    # page shows without deriving it (its kind, the checkpoint it concerns, normalized macros).
    number_or_null = {"oneOf": [{"type": "number"}, {"type": "null"}]}
    result = schemas["$defs"]["TrialResult"]
    schemas["$defs"]["TrialRow"] = {**result, "title": "TrialRow", "properties": {
        **result["properties"], "kind": {"type": "string"}, "checkpoint": {"oneOf": [{"type": "string"}, {"type": "null"}]},
        "source_text": {"type": "string"}, "macro_average": number_or_null, "report_macro_average": number_or_null}}
    reads = ("401", "404")
    action = {"name": "action", "in": "path", "required": True, "schema": {"type": "string", "enum": ["pause", "resume", "cancel"]}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "recycle", "version": "1", "description": "Search linear merges of a checkpoint pool."},
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/healthz": {"get": operation("liveness and store reachability", {"200": answer("ok")})},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "exposition text", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": operation("this document", {"200": answer("OpenAPI document")}, store=False)},
            "/v1/pools": {
                "post": operation("register and validate a checkpoint pool", {"201": answer("pool id and facts")},
                                  request=ref("PoolSpec"), secured=True, errors=("400", "401", "413", "422")),
                "get": operation("list pools", {"200": answer("pools")}, errors=("401",)),
            },
            "/v1/pools/{pool_id}": {"get": operation("one pool", {"200": answer("pool")}, params=[POOL_ID], errors=reads)},
            "/v1/searches": {
                "post": operation("start a search on a registered pool", {"201": answer("the search")},
                                  request=ref("SearchCreate"), secured=True, errors=("400", "401", "404", "413", "422")),
                "get": operation("list searches with status and progress", {"200": answer("searches")}, errors=("401",)),
            },
            "/v1/workers": {"get": operation("worker processes: heartbeat, current trial, alive",
                                             {"200": answer("workers", WORKERS)}, errors=("401",))},
            "/v1/searches/{search_id}": {"get": operation("status, counts, best, hypervolume", {"200": answer("search")}, params=[SEARCH_ID], errors=reads)},
            "/v1/searches/{search_id}/trials": {
                "get": operation(
                    "trial results in the order they were recorded",
                    {"200": answer("a page of trials", {"type": "object", "properties": {"total": {"type": "integer"}, "offset": {"type": "integer"}, "scaled": {"type": "boolean"}, "trials": {"type": "array", "items": TRIAL_ROW}}})},
                    params=[SEARCH_ID,
                            {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}],
                    errors=("400", "401", "404"),
                )
            },
            "/v1/searches/{search_id}/history": {"get": operation("best normalized macro and hypervolume after each settled trial", {"200": answer("history")}, params=[SEARCH_ID], errors=reads)},
            "/v1/searches/{search_id}/front": {"get": operation("the Pareto front on the search split", {"200": answer("front")}, params=[SEARCH_ID], errors=reads)},
            "/v1/searches/{search_id}/{action}": {
                "post": {
                    **operation("pause, resume or cancel", {"200": answer("new status"), "409": answer("not allowed in the current status", ERROR)},
                                params=[SEARCH_ID, action], secured=True, errors=("401", "404")),
                }
            },
            "/v1/searches/{search_id}/export": {
                "post": {
                    **operation("export one trial's merge as an HF directory + mergekit YAML",
                                {"201": answer("where it was written"),
                                 "409": answer("the trial failed, or its merge cannot be exported", ERROR)},
                                request=ref("ExportRequest"), params=[SEARCH_ID], secured=True, errors=("400", "401", "404", "413", "422")),
                }
            },
        },
    }
