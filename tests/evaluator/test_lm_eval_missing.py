"""Without lm-evaluation-harness a task of kind lm_eval is refused with a clear error, by the
evaluator, `recycle run` and the API; none of these tests needs lm-eval installed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from contracts import TaskSpec

RECYCLE = str(Path(sys.executable).parent / "recycle")
TASKS_DIR = Path(__file__).resolve().parents[2] / "evaluator" / "lm_eval_tasks"
NEXT_LINE = {"name": "next_line", "kind": "lm_eval", "path": str(TASKS_DIR / "next_line.yaml"), "seq_len": 64}
AUTH = {"Authorization": "Bearer lm-eval-token"}
MISSING = "needs lm-evaluation-harness"


@pytest.fixture
def without_lm_eval(monkeypatch):
    """This process as if lm-eval were not installed: importing it fails."""
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    for module in ("evaluator.lm_eval_task", "evaluator.lm_eval_model"):
        monkeypatch.delitem(sys.modules, module, raising=False)


def test_the_evaluator_refuses_the_kind_and_says_how_to_install_it(demo_pool, without_lm_eval):
    from transformers import AutoTokenizer

    from evaluator.data import TaskDataError
    from evaluator.tasks import make_task

    tokenizer = AutoTokenizer.from_pretrained(demo_pool.pool.checkpoints[0].path)
    with pytest.raises(TaskDataError, match=MISSING) as refused:
        make_task(TaskSpec(**NEXT_LINE), tokenizer, 64)
    assert "pip install 'recycle[lm-eval]'" in str(refused.value)


def test_importing_the_evaluator_does_not_import_lm_eval():
    code = "import sys, evaluator, evaluator.tasks; assert 'lm_eval' not in sys.modules, 'imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr


def test_recycle_run_refuses_the_search_with_a_message(demo_pool, tmp_path):
    fake = tmp_path / "no-lm-eval" / "lm_eval"  # shadows the installed package, if any
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'lm_eval'\")\n")
    search = {"pool": demo_pool.pool.model_dump(mode="json"),
              "tasks": [demo_pool.tasks[0].model_dump(mode="json", exclude_none=True), NEXT_LINE], "budget": 4}
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(search))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([RECYCLE, "run", str(tmp_path / "search.yaml"), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert MISSING in said and "pip install 'recycle[lm-eval]'" in said and "Traceback" not in said
    assert not (tmp_path / "run" / "trials.jsonl").exists()


@pytest.fixture
def client(demo_pool, tmp_path):
    from api import create_app
    from proposer import MemoryStore
    from recycle.serve.api_wiring import make_services
    from recycle.settings import Settings

    roots = [Path(c.path).parent for c in demo_pool.pool.checkpoints] + [Path(demo_pool.tasks[0].path).parent, TASKS_DIR]
    settings = Settings(allowed_roots=roots, api_token=SecretStr(AUTH["Authorization"].split()[1]), data_dir=tmp_path / "data")
    store = MemoryStore()
    return create_app(settings, store, make_services(settings)).test_client(), store


def post_search(client, demo_pool):
    pool_id = client.post("/v1/pools", json=demo_pool.pool.model_dump(mode="json"), headers=AUTH).json["id"]
    body = {"pool_id": pool_id, "tasks": [demo_pool.tasks[0].model_dump(mode="json"), NEXT_LINE], "budget": 4}
    return client.post("/v1/searches", json=body, headers=AUTH)


def test_the_api_refuses_the_search_with_the_reason(demo_pool, client, without_lm_eval):
    client, store = client
    response = post_search(client, demo_pool)
    assert response.status_code == 422, response.json
    assert MISSING in response.json["error"] and "recycle[lm-eval]" in response.json["error"]
    assert store.list_searches() == []


@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm-evaluation-harness is not installed")
def test_the_api_accepts_the_search_where_lm_eval_is_installed(demo_pool, client):
    client, store = client
    response = post_search(client, demo_pool)
    assert response.status_code == 201, response.json
    assert len(store.list_searches()) == 1


@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm-evaluation-harness is not installed")
def test_the_api_refuses_a_task_yaml_whose_data_lies_outside_the_roots(demo_pool, client, tmp_path):
    client, store = client
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jsonl").write_text((TASKS_DIR / "next_line.jsonl").read_text())
    inside = Path(demo_pool.tasks[0].path).parent / "leaky.yaml"  # the YAML itself is within the roots
    config = yaml.safe_load((TASKS_DIR / "next_line.yaml").read_text())
    config["dataset_kwargs"]["data_files"]["test"] = str(outside / "secret.jsonl")
    inside.write_text(yaml.safe_dump(config))
    try:
        pool_id = client.post("/v1/pools", json=demo_pool.pool.model_dump(mode="json"), headers=AUTH).json["id"]
        body = {"pool_id": pool_id, "budget": 4,
                "tasks": [demo_pool.tasks[0].model_dump(mode="json"), {**NEXT_LINE, "path": str(inside)}]}
        response = client.post("/v1/searches", json=body, headers=AUTH)
    finally:
        inside.unlink()
    assert response.status_code == 422, response.json
    assert "outside the allowed roots" in response.json["error"] and "secret.jsonl" in response.json["error"]
    assert store.list_searches() == []
