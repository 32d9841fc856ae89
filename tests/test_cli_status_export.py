"""`recycle status` and `recycle export` against the test Redis DB, on a search recorded
through the store API; the export is a real merge of the demo pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console
from safetensors.torch import load_file

from contracts import Proposal, SearchStatus
from proposer import best_by_macro
from proposer.redis_store import RedisStore
from recycle import cli
from tests.conftest import TEST_REDIS_URL
from tests.recorded_search import record_search


@pytest.fixture
def recorded(demo_pool, redis_client, monkeypatch):
    monkeypatch.setenv("RECYCLE_REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setattr(cli, "console", Console(width=250))  # wide enough that no cell wraps
    store = RedisStore(redis_client)
    spec = record_search(store, demo_pool, "s-cli-done")
    record_search(store, demo_pool, "s-cli-live", status=SearchStatus.running)
    return store, spec


def run(capsys, *args) -> tuple[int, str]:
    code = cli.main(list(args))
    return code, capsys.readouterr().out


def test_status_lists_every_search(recorded, capsys):
    code, out = run(capsys, "status")
    assert code == 0, out
    lines = {line.split()[1]: line for line in out.splitlines() if "s-cli-" in line}
    assert set(lines) == {"s-cli-done", "s-cli-live"}
    assert "completed" in lines["s-cli-done"] and "running" in lines["s-cli-live"]
    assert "9/10 (1 failed)" in lines["s-cli-done"]
    assert out.index("s-cli-live") < out.index("s-cli-done")  # newest first

    code, out = run(capsys, "status", "--json")
    views = json.loads(out)
    assert [v["id"] for v in views] == ["s-cli-live", "s-cli-done"]
    assert views[1]["done"] == 8 and views[1]["failed"] == 1 and views[1]["hypervolume"] > 0


def test_status_of_one_search_prints_its_front(recorded, capsys):
    store, spec = recorded
    code, out = run(capsys, "status", "s-cli-done")
    assert code == 0, out
    best = best_by_macro(store.results("s-cli-done"), spec.objectives)
    assert "Pareto front" in out and "completed" in out and best.trial_id in out
    for name in spec.pool.names:
        assert f"single:{name}" in out


def test_export_writes_a_model_transformers_loads(recorded, capsys, tmp_path, demo_pool):
    from transformers import AutoModelForCausalLM

    store, spec = recorded
    best = best_by_macro(store.results("s-cli-done"), spec.objectives)
    out = tmp_path / "merged"
    code, printed = run(capsys, "export", "s-cli-done", "best", "--out", str(out))
    assert code == 0, printed
    assert AutoModelForCausalLM.from_pretrained(out) is not None
    meta = json.loads((out / "recycle.json").read_text())
    assert meta["search_id"] == "s-cli-done" and meta["trial_id"] == best.trial_id
    assert meta["weights"] == dict(zip(spec.pool.names, best.proposal.weights))
    assert meta["scores"] == best.scores
    assert yaml.safe_load((out / "mergekit.yaml").read_text())["merge_method"] == "linear"
    # The merge is the weighted sum of the pool.
    merged = load_file(str(out / "model.safetensors"))
    states = [load_file(str(Path(c.path) / "model.safetensors")) for c in demo_pool.pool.checkpoints]
    name = next(iter(merged))
    reference = sum(w * s[name].double() for w, s in zip(best.proposal.weights, states))
    assert torch.allclose(merged[name].double(), reference, atol=1e-5)

    by_number = tmp_path / "by-number"
    assert run(capsys, "export", "s-cli-done", "1", "--out", str(by_number))[0] == 0
    assert json.loads((by_number / "recycle.json").read_text())["trial_id"] == Proposal.make_trial_id("s-cli-done", 1)


@pytest.mark.parametrize(
    "args, words",
    [
        (["export", "nope", "best"], "no search 'nope'"),
        (["export", "s-cli-done", "99"], "no result for trial"),
        (["export", "s-cli-done", "8"], "failed (worker lost)"),
        (["status", "nope"], "no search 'nope'"),
    ],
)
def test_bad_requests_exit_2_and_write_nothing(recorded, capsys, tmp_path, args, words):
    out = tmp_path / "x"
    code, printed = run(capsys, *args, *(["--out", str(out)] if args[0] == "export" else []))
    assert code == 2 and words in printed.replace("\n", " "), printed
    assert not out.exists()


def test_export_refuses_a_non_empty_target(recorded, capsys, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, printed = run(capsys, "export", "s-cli-done", "best", "--out", str(out))
    assert code == 2 and "not empty" in printed
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_status_says_when_redis_is_unreachable(capsys, monkeypatch):
    monkeypatch.setenv("RECYCLE_REDIS_URL", "redis://:secret@127.0.0.1:1/0")
    code, printed = run(capsys, "status")
    assert code == 2 and "cannot reach Redis" in printed and "secret" not in printed
