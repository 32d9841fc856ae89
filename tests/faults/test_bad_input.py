"""Bad pools and searches, posted to the app with its real services (merger, evaluator):
each gets a 4xx whose message names the problem, and nothing is stored or written.
(tests/api/test_api.py covers paths outside the roots, missing paths, linked folders,
duplicate names and unknown fields; these are the rest.)"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from pydantic import SecretStr
from safetensors.torch import load_file, save_file

from api import create_app
from proposer import MemoryStore
from recycle.serve.api_wiring import make_services
from recycle.settings import Settings
from tests.faults.scenarios import truncate

TOKEN = "bad-input-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class WritesAFileWhenUnpickled:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def root(tmp_path, demo_pool) -> Path:
    """An allowed root holding a copy of the demo pool (checkpoints base, python, ...)."""
    root = tmp_path / "root"
    for ref in demo_pool.pool.checkpoints:
        shutil.copytree(ref.path, root / ref.name)
    return root


@pytest.fixture
def outside(tmp_path) -> Path:
    (tmp_path / "outside").mkdir()
    return tmp_path / "outside"


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
def client(root, store, tmp_path, demo_pool):
    tasks_root = Path(demo_pool.tasks[0].path).parent
    settings = Settings(allowed_roots=[root, tasks_root], api_token=SecretStr(TOKEN), data_dir=tmp_path / "data")
    return create_app(settings, store, make_services(settings)).test_client()


def pool_of(root: Path, names=("base", "python", "c")) -> dict:
    return {"name": "p", "checkpoints": [{"name": n, "path": str(root / n)} for n in names]}


def snapshot(*folders: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for folder in folders for p in folder.rglob("*") if p.is_file()}


def rewrite(path: Path, change) -> None:
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def first_matrix(tensors: dict) -> str:
    return next(name for name, t in sorted(tensors.items()) if t.dim() == 2)


def drop_tensor(root, outside):
    rewrite(root / "c" / "model.safetensors", lambda t: t.pop(first_matrix(t)))
    return pool_of(root), ["'c' lacks tensor"]


def reshape_tensor(root, outside):
    def change(t):
        name = first_matrix(t)
        t[name] = t[name][:-1].contiguous()
    rewrite(root / "c" / "model.safetensors", change)
    return pool_of(root), ["checkpoint 'c'", "has shape", "expected"]


def change_dtype(root, outside):
    def change(t):
        name = first_matrix(t)
        t[name] = t[name].to(torch.float16)
    rewrite(root / "c" / "model.safetensors", change)
    return pool_of(root), ["checkpoint 'c'", "has dtype F16", "expected F32"]


def truncated_file(root, outside):
    truncate(root / "c" / "model.safetensors")
    return pool_of(root), ["checkpoint 'c'", "truncated"]


def garbage_file(root, outside):
    (root / "c" / "model.safetensors").write_bytes(b"\xff" * 64)
    return pool_of(root), ["checkpoint 'c'", "not a safetensors file"]


def pickled_directory(root, outside):
    (root / "c" / "model.safetensors").unlink()
    (root / "c" / "pytorch_model.bin").write_bytes(pickle.dumps({"w": WritesAFileWhenUnpickled(outside / "ran")}))
    return pool_of(root), ["checkpoint 'c'", "pytorch_model.bin is a pickled checkpoint, refused", "arbitrary code"]


def pickled_file(root, outside):
    (root / "weights.pt").write_bytes(pickle.dumps({"w": WritesAFileWhenUnpickled(outside / "ran")}))
    body = pool_of(root, ("base",))
    body["checkpoints"].append({"name": "c", "path": str(root / "weights.pt")})
    return body, ["checkpoint 'c'", "weights.pt is a pickled checkpoint, refused"]


def pickled_shards(root, outside):
    (root / "c" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "pytorch_model-00001.bin"}}))
    return pool_of(root), ["checkpoint 'c'", "pickled checkpoint, refused"]


def shard_outside_the_folder(root, outside):
    (root / "c" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "../base/model.safetensors"}}))
    return pool_of(root), ["checkpoint 'c'", "not a file in the directory"]


def file_linked_out_of_the_roots(root, outside):
    shutil.move(root / "c" / "model.safetensors", outside / "model.safetensors")
    (root / "c" / "model.safetensors").symlink_to(outside / "model.safetensors")
    return pool_of(root), ["checkpoint 'c'", "outside the allowed roots"]


def relative_path(root, outside):
    body = pool_of(root)
    body["checkpoints"][2]["path"] = "c"
    return body, ["checkpoint 'c'", "must be absolute"]


def home_relative_path(root, outside):
    body = pool_of(root)
    body["checkpoints"][2]["path"] = "~nobody-here/c"
    return body, ["checkpoint 'c'", "must be absolute"]


def nul_in_path(root, outside):
    body = pool_of(root)
    body["checkpoints"][2]["path"] = str(root / "c") + "\x00.safetensors"
    return body, ["checkpoint 'c'", "NUL"]


def unpaired_surrogate(root, outside):
    body = pool_of(root)
    body["checkpoints"][2]["path"] = str(root / "c") + "\ud800"
    return body, ["checkpoints.2.path", "valid string"]  # pydantic already refuses it


@pytest.mark.parametrize("make", [
    drop_tensor, reshape_tensor, change_dtype, truncated_file, garbage_file, pickled_directory, pickled_file,
    pickled_shards, shard_outside_the_folder, file_linked_out_of_the_roots, relative_path, home_relative_path,
    nul_in_path, unpaired_surrogate,
], ids=lambda f: f.__name__)
def test_bad_pools_are_refused_with_the_reason(client, store, root, outside, tmp_path, make):
    body, words = make(root, outside)
    before = snapshot(tmp_path)
    response = client.post("/v1/pools", json=body, headers=AUTH)
    assert response.status_code == 422, response.json
    for word in words:
        assert word in response.json["error"], (word, response.json["error"])
    assert store.list_pools() == {}
    assert snapshot(tmp_path) == before  # nothing written (and nothing unpickled: no "ran" file)
    assert not (outside / "ran").exists()


def search_body(pool_id, demo_pool, **overrides) -> dict:
    return {"pool_id": pool_id, "tasks": [t.model_dump(mode="json") for t in demo_pool.tasks], "budget": 6, **overrides}


def task_linked_out_of_the_roots(body, root, outside):
    (outside / "secret.jsonl").write_text('{"text": "not yours"}\n')
    (root / "task.jsonl").symlink_to(outside / "secret.jsonl")
    body["tasks"][0]["path"] = str(root / "task.jsonl")
    return 422, ["outside the allowed roots"]


def task_missing(body, root, outside):
    body["tasks"][0]["path"] = str(root / "nope.jsonl")
    return 422, ["nope.jsonl"]


def task_not_jsonl(body, root, outside):
    (root / "task.jsonl").write_text("this is not json\n")
    body["tasks"][0]["path"] = str(root / "task.jsonl")
    return 422, ["task.jsonl"]


def left_out_task_missing(body, root, outside):
    body["left_out_tasks"] = [{**body["tasks"][0], "name": "later", "path": str(root / "gone.jsonl")}]
    return 422, ["gone.jsonl"]


def left_out_task_outside_the_roots(body, root, outside):
    (outside / "secret.jsonl").write_text('{"text": "not yours"}\n')
    body["left_out_tasks"] = [{**body["tasks"][0], "name": "later", "path": str(outside / "secret.jsonl")}]
    return 422, ["task 'later'", "outside the allowed roots"]


def relative_task_path(body, root, outside):
    body["tasks"][0]["path"] = "tasks/python.jsonl"
    return 422, ["task 'python'", "must be absolute"]


def merge_base_with_normalized_weights(body, root, outside):
    body["merge"] = {"base": "base", "normalize": True}
    return 422, ["normalize: false"]


def merge_base_not_in_the_pool(body, root, outside):
    body["merge"] = {"base": "nobody", "normalize": False}
    return 422, ["'nobody' is not a checkpoint of the pool"]


def huge_timeout(body, root, outside):
    body["trial_timeout_s"] = 1e300
    return 422, ["trial_timeout_s", "less than or equal"]


@pytest.mark.parametrize("make", [
    task_linked_out_of_the_roots, task_missing, task_not_jsonl, left_out_task_missing, left_out_task_outside_the_roots,
    relative_task_path,
    merge_base_with_normalized_weights, merge_base_not_in_the_pool, huge_timeout,
], ids=lambda f: f.__name__)
def test_bad_searches_are_refused_with_the_reason(client, store, root, outside, demo_pool, tmp_path, make):
    pool_id = client.post("/v1/pools", json=pool_of(root), headers=AUTH).json["id"]
    body = search_body(pool_id, demo_pool)
    status, words = make(body, root, outside)
    before = snapshot(tmp_path)
    response = client.post("/v1/searches", json=body, headers=AUTH)
    assert response.status_code == status, response.json
    for word in words:
        assert word in response.json["error"], (word, response.json["error"])
    assert store.list_searches() == []
    assert snapshot(tmp_path) == before


def test_a_number_too_large_for_a_float_is_refused(client, store, root, demo_pool):
    pool_id = client.post("/v1/pools", json=pool_of(root), headers=AUTH).json["id"]
    raw = json.dumps(search_body(pool_id, demo_pool, trial_timeout_s=1.0)).replace('"trial_timeout_s": 1.0', '"trial_timeout_s": 1e999')
    assert "1e999" in raw  # valid JSON; Python parses it as infinity
    response = client.post("/v1/searches", data=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422 and "trial_timeout_s" in response.json["error"], response.json
    assert store.list_searches() == []


@pytest.mark.parametrize("raw, status, words", [
    ("[" * 100_000 + "]" * 100_000, 400, "nested too deeply"),
    ('{"name": "p", "checkpoints": [{"name": "c", "path": NaN}]}', 400, "NaN is not JSON"),
    ('{"pool_id": "x", "tasks": [], "budget": Infinity}', 400, "Infinity is not JSON"),
    ('{"pool_id": "x", "tasks": [], "budget": -Infinity}', 400, "-Infinity is not JSON"),
    ('{"name": "p", ', 400, "not valid JSON"),
    (b"\xff\xfe\x00", 400, "not valid JSON"),
    ("x" * (2 * 1024 * 1024), 413, "large"),
    ('{"name": "' + "a" * (1024 * 1024) + '"}', 413, "large"),
])
@pytest.mark.parametrize("path", ["/v1/pools", "/v1/searches"])
def test_malformed_and_huge_bodies_are_refused(client, store, path, raw, status, words):
    response = client.post(path, data=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == status, response.json
    assert words in response.json["error"]
    assert store.list_pools() == {} and store.list_searches() == []


def test_the_trials_page_refuses_what_is_not_an_integer(client, root, demo_pool):
    pool_id = client.post("/v1/pools", json=pool_of(root), headers=AUTH).json["id"]
    search_id = client.post("/v1/searches", json=search_body(pool_id, demo_pool), headers=AUTH).json["id"]
    for query in ("offset=abc", "offset=1_0", "offset=%207", "limit=1.5", "limit=", "limit=%D9%A3"):
        response = client.get(f"/v1/searches/{search_id}/trials?{query}")
        assert response.status_code == 400 and "must be an integer" in response.json["error"], (query, response.json)
    assert client.get(f"/v1/searches/{search_id}/trials?offset=10000000000000000000000").json["trials"] == []
