"""The `recycle` command end to end on the real demo pool: run a search, merge, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

RECYCLE = str(Path(sys.executable).parent / "recycle")


def recycle(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([RECYCLE, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_run_a_search_from_yaml(demo_pool, tmp_path):
    search = {
        "pool": demo_pool.pool.model_dump(mode="json"),
        "tasks": [t.model_dump(mode="json") for t in demo_pool.tasks],
        "strategy": "cmaes", "budget": 10, "concurrency": 2, "seed": 1,
    }
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(search))
    out = tmp_path / "run"
    done = recycle("run", str(path), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr

    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 10 and len({t["proposal"]["trial_id"] for t in trials}) == 10
    sources = [t["proposal"]["source"] for t in sorted(trials, key=lambda t: t["proposal"]["number"])]
    n = len(demo_pool.pool.names)
    assert sources[:n] == [f"single:{name}" for name in demo_pool.pool.names] and sources[n] == "uniform"
    assert "cmaes" in sources
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 10 and summary["hypervolume"] > 0 and summary["front"]
    assert "held_out" in summary and summary["held_out"]["best_single"] > 0
    assert (out / "front.png").stat().st_size > 10_000
    assert (out / "best-merge" / "mergekit.yaml").exists()
    assert json.loads((out / "best-merge" / "recycle.json").read_text())["search_id"] == "run"
    assert "Pareto front" in done.stdout


def test_merge_matches_a_torch_reference(demo_pool, tmp_path):
    paths = [c.path for c in demo_pool.pool.checkpoints]
    weights = [0.5, 0.3, 0.2][: len(paths)] + [0.0] * max(0, len(paths) - 3)
    out = tmp_path / "merged"
    done = recycle("merge", *paths, "--weights", *map(str, weights), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    merged = load_file(str(out / "model.safetensors"))
    states = [load_file(str(Path(p) / "model.safetensors")) for p in paths]
    total = sum(weights)
    for name, tensor in merged.items():
        reference = sum(w / total * s[name].double() for w, s in zip(weights, states))
        assert torch.allclose(tensor.double(), reference, atol=1e-6), name
    config = yaml.safe_load((out / "mergekit.yaml").read_text())
    assert config["merge_method"] == "linear"


@pytest.mark.parametrize(
    "args, words",
    [
        (["merge", "/nonexistent", "--weights", "1", "--out", "x"], "does not exist"),
        (["merge", "{ckpt}", "{ckpt}", "--weights", "1", "--out", "x"], "weight"),
        (["merge", "{ckpt}", "--weights", "nan", "--out", "x"], "finite"),
        (["run", "/nonexistent.yaml"], "cannot read"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_writes_nothing(demo_pool, tmp_path, args, words):
    ckpt = demo_pool.pool.checkpoints[0].path
    done = recycle(*[a.replace("{ckpt}", ckpt) for a in args], cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert words in (done.stdout + done.stderr).lower()
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "x").exists()
