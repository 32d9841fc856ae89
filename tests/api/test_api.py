"""The Flask app with the real services (merger, evaluator) and the in-memory store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from api import create_app
from proposer import MemoryStore
from recycle.serve.api_wiring import make_services
from recycle.settings import Settings

TOKEN = "api-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def root(demo_pool) -> Path:
    return Path(demo_pool.pool.checkpoints[0].path).parent.parent


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
def client(root, store, tmp_path):
    settings = Settings(allowed_roots=[root], api_token=SecretStr(TOKEN), data_dir=tmp_path)
    app = create_app(settings, store, make_services(settings))
    return app.test_client()


def pool_body(demo_pool) -> dict:
    return demo_pool.pool.model_dump(mode="json")


def search_body(pool_id, demo_pool, **overrides) -> dict:
    return {"pool_id": pool_id, "tasks": [t.model_dump(mode="json") for t in demo_pool.tasks], "budget": 6, **overrides}


def test_pool_roundtrip_is_content_addressed(client, demo_pool):
    first = client.post("/v1/pools", json=pool_body(demo_pool), headers=AUTH)
    again = client.post("/v1/pools", json=pool_body(demo_pool), headers=AUTH)
    assert first.status_code == again.status_code == 201
    assert first.json["id"] == again.json["id"] and first.json["tensors"] > 0
    assert client.get(f"/v1/pools/{first.json['id']}").json["pool"]["name"] == demo_pool.pool.name
    assert [p["id"] for p in client.get("/v1/pools").json["pools"]] == [first.json["id"]]


def test_mutations_need_the_token(client, demo_pool, store):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = client.post("/v1/pools", json=pool_body(demo_pool), headers=headers)
        assert response.status_code == 401 and "token" in response.json["error"]
    assert store.list_pools() == {}


@pytest.mark.parametrize(
    "mutate, status, words",
    [
        (lambda b, root: {**b, "checkpoints": [{"name": "x", "path": "/etc"}]}, 422, "allowed roots"),
        (lambda b, root: {**b, "checkpoints": [{"name": "x", "path": str(root / "nope")}]}, 422, "does not exist"),
        (lambda b, root: {**b, "checkpoints": b["checkpoints"] + [b["checkpoints"][0]]}, 422, "unique"),
        (lambda b, root: {**b, "extra": 1}, 422, "extra"),
        (lambda b, root: {"name": "p"}, 422, "checkpoints"),
        (lambda b, root: [1, 2], 400, "JSON object"),
    ],
)
def test_bad_pools_are_refused_and_nothing_is_stored(client, demo_pool, store, root, mutate, status, words):
    response = client.post("/v1/pools", json=mutate(pool_body(demo_pool), root), headers=AUTH)
    assert response.status_code == status, response.json
    assert words in response.json["error"]
    assert store.list_pools() == {}


def test_symlink_escaping_the_roots_is_refused(client, demo_pool, root, store):
    link = root / "escape"
    link.symlink_to("/etc", target_is_directory=True)
    try:
        body = {"name": "p", "checkpoints": [{"name": "x", "path": str(link)}]}
        response = client.post("/v1/pools", json=body, headers=AUTH)
        assert response.status_code == 422 and "allowed roots" in response.json["error"]
    finally:
        link.unlink()
    assert store.list_pools() == {}


def test_huge_body_is_refused(client):
    response = client.post("/v1/pools", data="x" * (2 * 1024 * 1024), headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413 and "error" in response.json


def test_search_lifecycle_and_errors(client, demo_pool, store):
    pool_id = client.post("/v1/pools", json=pool_body(demo_pool), headers=AUTH).json["id"]
    missing_pool = client.post("/v1/searches", json=search_body("pool-nope", demo_pool), headers=AUTH)
    assert missing_pool.status_code == 404
    bad_strategy = client.post("/v1/searches", json=search_body(pool_id, demo_pool, strategy="grid"), headers=AUTH)
    assert bad_strategy.status_code == 422 and "strategy" in bad_strategy.json["error"]
    outside = search_body(pool_id, demo_pool)
    outside["tasks"][0]["path"] = "/etc/passwd"
    assert client.post("/v1/searches", json=outside, headers=AUTH).status_code == 422
    extrapolating_simplex = client.post("/v1/searches", json=search_body(pool_id, demo_pool, max_weight=1.5), headers=AUTH)
    assert extrapolating_simplex.status_code == 422 and "max_weight" in extrapolating_simplex.json["error"]
    assert store.list_searches() == []

    created = client.post("/v1/searches", json=search_body(pool_id, demo_pool), headers=AUTH)
    assert created.status_code == 201, created.json
    search_id = created.json["id"]
    assert created.json["status"] == "running" and created.json["done"] == 0
    assert client.get(f"/v1/searches/{search_id}/trials").json == {"total": 0, "offset": 0, "scaled": False, "trials": []}
    assert client.get(f"/v1/searches/{search_id}/front").json["front"] == []
    assert client.post(f"/v1/searches/{search_id}/resume", headers=AUTH).status_code == 409
    assert client.post(f"/v1/searches/{search_id}/pause", headers=AUTH).json["status"] == "paused"
    assert client.post(f"/v1/searches/{search_id}/explode", headers=AUTH).status_code == 404
    assert client.post(f"/v1/searches/{search_id}/cancel", headers=AUTH).json["status"] == "cancelled"
    export = client.post(f"/v1/searches/{search_id}/export", json={"trial_id": "nope"}, headers=AUTH)
    assert export.status_code == 404
    assert client.get("/v1/searches/nope").status_code == 404
    assert client.get(f"/v1/searches/{search_id}/trials?limit=0").status_code == 400


def test_reads_can_require_the_token(root, tmp_path):
    settings = Settings(allowed_roots=[root], api_token=SecretStr(TOKEN), data_dir=tmp_path, public_reads=False)
    client = create_app(settings, MemoryStore(), make_services(settings)).test_client()
    assert client.get("/v1/pools").status_code == 401
    assert client.get("/v1/pools", headers=AUTH).status_code == 200


# The status page's HTML and its static files are for browsers, not API clients.
HTML_ENDPOINTS = {"pages.index", "pages.search", "pages.static"}


def test_openapi_describes_every_route(client):
    document = client.get("/openapi.json").json
    assert document["openapi"].startswith("3.")
    described = set(document["paths"])
    rules = list(client.application.url_map.iter_rules())
    assert {r.endpoint for r in rules if r.endpoint.startswith("pages.")} == HTML_ENDPOINTS
    for rule in rules:
        if rule.endpoint not in HTML_ENDPOINTS:
            path = re.sub(r"<(?:[^<>:]+:)?([^<>:]+)>", r"{\1}", rule.rule)  # <any(a, b):action> -> {action}
            assert path in described, path
    assert "SearchCreate" in document["components"]["schemas"]
