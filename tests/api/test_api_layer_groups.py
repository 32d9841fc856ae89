"""Searches with weights per layer group or module class through the API: bad layouts refused, the view and the page's weights."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from merger.layers import layer_count
from tests.api.test_api import AUTH, client, pool_body, root, search_body, store  # noqa: F401 - fixtures

TABLES_JS = Path(__file__).resolve().parents[2] / "api" / "static" / "search" / "tables.js"


def grouped(body: dict, weights) -> dict:
    return {**body, "merge": {"weights": weights}}


def test_bad_layouts_are_refused_with_a_json_error_and_nothing_is_stored(client, demo_pool, store):
    pool_id = client.post("/v1/pools", json=pool_body(demo_pool), headers=AUTH).json["id"]
    layers = layer_count(Path(demo_pool.pool.checkpoints[0].path), [])
    body = search_body(pool_id, demo_pool)
    for weights, words in [
        ({"per": "layer_groups", "groups": 1}, "greater than or equal to 2"),
        ({"per": "layer_groups"}, "needs groups"),
        ({"per": "attention_heads", "groups": 2}, "per"),
        ({"per": "model", "groups": 2}, "weights.groups is for per: layer_groups"),
        ({"per": "layer_groups", "groups": layers + 1}, f"have {layers} layer"),
        ({"per": "module_classes", "groups": 4}, "per: module_classes has one weight vector per module class"),
    ]:
        response = client.post("/v1/searches", json=grouped(body, weights), headers=AUTH)
        assert response.status_code == 422, (weights, response.json)
        assert words in response.json["error"], (weights, response.json)
    assert store.list_searches() == []

    created = client.post("/v1/searches", json=grouped(body, {"per": "layer_groups", "groups": layers}), headers=AUTH)
    assert created.status_code == 201, created.json
    assert created.json["weight_groups"] == layers and created.json["checkpoints"] == demo_pool.pool.names
    stored = store.get_search(created.json["id"])
    assert stored.merge.weights.n_groups == layers

    created = client.post("/v1/searches", json=grouped(body, {"per": "module_classes"}), headers=AUTH)
    assert created.status_code == 201, created.json
    assert created.json["weight_groups"] == 4
    assert store.get_search(created.json["id"]).merge.weights.per == "module_classes"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_page_shows_the_mean_over_groups_and_the_csv_every_weight():
    script = f"""
    globalThis.Recycle = {{ el: () => null, fixed: (x) => String(x) }};
    const tables = await import({json.dumps(TABLES_JS.as_uri())});
    const view = {{ checkpoints: ["a", "b"], weight_groups: 2, objectives: [{{ name: "t" }}] }};
    const trial = {{ proposal: {{ number: 0, trial_id: "x", weights: [0.2, 0.8, 0.6, 0.4] }}, source_text: "tpe",
                     status: "ok", scores: {{ t: 1 }}, report: {{}} }};
    console.log(JSON.stringify({{
      mean: tables.checkpointWeights(trial.proposal.weights, view),
      plain: tables.checkpointWeights([0.3, 0.7], {{ checkpoints: ["a", "b"] }}),
      csv: tables.trialsCsv([trial], view, new Set(), () => "tpe").split("\\r\\n").slice(0, 2),
    }}));
    """
    done = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["mean"] == pytest.approx([0.4, 0.6]) and out["plain"] == [0.3, 0.7]
    header, row = out["csv"]
    assert "weight:group0:a,weight:group0:b,weight:group1:a,weight:group1:b" in header
    assert "0.2,0.8,0.6,0.4" in row
