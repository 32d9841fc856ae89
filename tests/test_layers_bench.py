"""bench/layers.py end to end at test scale: a line per run and per comparison, and the Markdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_layers_bench_runs_both_layouts_and_compares_them(tmp_path):
    out = subprocess.run(
        [sys.executable, "bench/layers.py", "--quick", "--scale", "test", "--out", str(tmp_path),
         "--write", str(tmp_path / "layers.md")],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    runs = {line["run"]: line for line in lines if "run" in line}
    assert list(runs) == ["global-24", "global-32", "groups2-32"]
    assert [runs[k]["groups"] for k in runs] == [1, 1, 2] and all(r["failed_trials"] == 0 for r in runs.values())
    assert runs["global-24"]["group_spread"] == 0.0
    for run in runs.values():
        for key in ("vs_best_single", "vs_uniform", "vs_greedy"):
            assert run[key]["lo"] <= run[key]["hi"], key
    comparisons = [line for line in lines if "comparison" in line]
    assert [c["comparison"] for c in comparisons] == ["groups2-32 vs global-24", "groups2-32 vs global-32", "global-32 vs global-24"]
    assert all(c["family_size"] == 3 and c["lo"] <= c["diff"] <= c["hi"] for c in comparisons)
    # The held-out difference is the difference of the two runs' held-out macros.
    first = comparisons[0]
    assert abs(first["diff"] - (runs["global-24"]["held_out_macro"] - runs["groups2-32"]["held_out_macro"])) < 1e-9
    again = subprocess.run([sys.executable, "bench/layers.py", "--from-lines", str(tmp_path / "runs.jsonl"),
                            "--write", str(tmp_path / "again.md")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "again.md").read_text().split("\n")[4:] == (tmp_path / "layers.md").read_text().split("\n")[4:]


def test_merge_speed_times_each_layout_and_the_markdown_shows_it(tmp_path):
    run = [sys.executable, "bench/layers.py", "--merge-speed", "--scale", "test", "--out", str(tmp_path)]
    out = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [line["merge_speed"] for line in lines] == ["per model", "2 layer groups"]
    assert lines[0]["segment_runs"] < lines[1]["segment_runs"] and all(line["seconds"] > 0 for line in lines)
    again = subprocess.run([sys.executable, "bench/layers.py", "--from-lines", str(tmp_path / "merge-speed.jsonl"),
                            "--write", str(tmp_path / "speed.md")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "| 2 layer groups |" in (tmp_path / "speed.md").read_text()
