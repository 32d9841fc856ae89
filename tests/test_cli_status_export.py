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
from proposer import best_by_macro, normalization_of
from proposer.redis_store import RedisStore
from recycle import cli
from recycle.commands import common
from tests.conftest import TEST_REDIS_URL
from tests.recorded_search import record_search


@pytest.fixture
def recorded(demo_pool, redis_client, monkeypatch):
    monkeypatch.setenv("RECYCLE_REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setattr(common, "console", Console(width=250))  # wide enough that no cell wraps
    store = RedisStore(redis_client)
    spec = record_search(store, demo_pool, "s-cli-done")
    record_search(store, demo_pool, "s-cli-live", status=SearchStatus.running)
    return store, spec


def best_of(store, search_id, spec):
    results = store.results(search_id)
    return best_by_macro(results, normalization_of(spec, results))


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
    best = best_of(store, "s-cli-done", spec)
    assert "Pareto front" in out and "completed" in out and best.trial_id in out
    for name in spec.pool.names:
        assert f"single:{name}" in out


def test_export_writes_a_model_transformers_loads(recorded, capsys, tmp_path, demo_pool):
    from transformers import AutoModelForCausalLM

    store, spec = recorded
    best = best_of(store, "s-cli-done", spec)
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


def write_run_dir(folder: Path, store, search_id: str, spec, finished: bool) -> None:
    """search.json and trials.jsonl as `recycle run` writes them; summary.json once the search ended."""
    folder.mkdir(parents=True)
    (folder / "search.json").write_text(spec.model_dump_json(indent=2))
    (folder / "trials.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in store.results(search_id)))
    if finished:
        (folder / "summary.json").write_text("{}")


@pytest.fixture
def demo_run(demo_pool, tmp_path, monkeypatch):
    """A run directory as `recycle demo` writes it, one folder per strategy: tpe finished, cmaes
    still running (its last line half written)."""
    from proposer import MemoryStore

    monkeypatch.setattr(common, "console", Console(width=250))
    store, out = MemoryStore(), tmp_path / "demo-run"
    for label, finished in [("tpe", True), ("cmaes", False)]:
        spec = record_search(store, demo_pool, f"demo-run-{label}")
        write_run_dir(out / label, store, f"demo-run-{label}", spec, finished)
    with (out / "cmaes" / "trials.jsonl").open("a") as trials:
        trials.write('{"proposal": {"search_id": "demo-r')
    return out, store, spec


def test_status_of_a_run_directory_lists_its_searches(demo_run, capsys):
    out, _, _ = demo_run
    code, printed = run(capsys, "status", str(out))
    assert code == 0, printed
    lines = {line.split()[1]: line for line in printed.splitlines() if "demo-run-" in line}
    assert set(lines) == {"demo-run-tpe", "demo-run-cmaes"}
    assert "completed" in lines["demo-run-tpe"] and "running" in lines["demo-run-cmaes"]
    assert "9/10 (1 failed)" in lines["demo-run-tpe"] and f"run directory {out}" in printed

    code, printed = run(capsys, "status", str(out), "--json")
    views = {v["id"]: v for v in json.loads(printed)}
    assert views["demo-run-tpe"]["done"] == 8 and views["demo-run-cmaes"]["status"] == "running"


def test_status_of_one_search_folder_prints_its_front(demo_run, capsys):
    out, store, spec = demo_run
    code, printed = run(capsys, "status", str(out / "tpe"))
    best = best_of(store, "demo-run-tpe", spec)
    assert code == 0 and "Pareto front" in printed and best.trial_id in printed, printed


def test_export_from_a_run_directory(demo_run, capsys, tmp_path):
    out, store, spec = demo_run
    best = best_of(store, "demo-run-tpe", spec)
    code, printed = run(capsys, "export", str(out / "tpe"), "best", "--out", str(tmp_path / "best"))
    assert code == 0, printed
    meta = json.loads((tmp_path / "best" / "recycle.json").read_text())
    assert meta["search_id"] == "demo-run-tpe" and meta["trial_id"] == best.trial_id
    # Of a directory of several searches, a full trial id says which.
    trial = Proposal.make_trial_id("demo-run-cmaes", 2)
    code, printed = run(capsys, "export", str(out), trial, "--out", str(tmp_path / "by-id"))
    assert code == 0, printed
    assert json.loads((tmp_path / "by-id" / "recycle.json").read_text())["trial_id"] == trial


@pytest.mark.parametrize("target, trial, words", [
    ("{out}", "best", "holds 2 searches"),
    ("{out}/tpe", "99", "no result for trial"),
    ("{tmp}/empty", "best", "not a run directory"),
    ("{tmp}/nowhere", "best", "is not a directory"),
])
def test_run_directory_mistakes_exit_2_and_write_nothing(demo_run, capsys, tmp_path, target, trial, words):
    out, _, _ = demo_run
    (tmp_path / "empty").mkdir()
    target = target.format(out=out, tmp=tmp_path)
    for args in (["export", target, trial, "--out", str(tmp_path / "x")], ["status", target]):
        if args[0] == "status" and words in ("holds 2 searches", "no result for trial"):
            continue
        code, printed = run(capsys, *args)
        assert code == 2 and words in printed.replace("\n", " "), printed
    assert not (tmp_path / "x").exists()


def test_a_closed_pipe_ends_quietly(demo_run):
    """`recycle status --json | head -c 300`: the reader leaves before the writer is done."""
    import subprocess
    import sys

    out, _, _ = demo_run
    recycle = str(Path(sys.executable).parent / "recycle")
    reader = subprocess.Popen([recycle, "status", str(out), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.close()  # gone before the command prints anything
    _, errors = reader.communicate(timeout=120)
    assert reader.returncode == 1 and b"Traceback" not in errors and b"BrokenPipe" not in errors, errors
