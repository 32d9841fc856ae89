"""bench/science.py end to end at test scale: the JSON lines the issue asks for, and their summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"strategy", "pool_seed", "search_seed", "vs_best_single", "vs_uniform", "vs_greedy", "left_out_task",
        "weights_above_001", "bootstrap_unit", "correction"}


def test_quick_science_bench_prints_a_line_per_run_and_a_summary_per_strategy(tmp_path):
    out = subprocess.run(
        [sys.executable, "bench/science.py", "--quick", "--dev", "--scale", "test", "--strategies", "default,random",
         "--out", str(tmp_path), "--write", str(tmp_path / "science.md")],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    runs = [line for line in lines if "strategy" in line]
    assert [(r["strategy"], r["search_seed"]) for r in runs] == [("default", 0), ("default", 1), ("random", 0), ("random", 1)]
    for run in runs:
        assert KEYS <= run.keys() and run["bootstrap_unit"] == "group" and run["correction"] == "holm"
        for key in ("vs_best_single", "vs_uniform", "vs_greedy", "left_out_task"):
            assert run[key]["lo"] <= run[key]["hi"], key
        assert 1 <= run["weights_above_001"] <= run["checkpoints"] == 17
    summaries = [line for line in lines if "summary" in line]
    assert [s["summary"] for s in summaries] == ["default", "random"]
    assert all(s["vs_greedy"]["runs"] == 2 for s in summaries)
    # The Markdown regenerates from the saved lines alone.
    again = subprocess.run([sys.executable, "bench/science.py", "--from-lines", str(tmp_path / "runs.jsonl"),
                            "--write", str(tmp_path / "again.md")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "again.md").read_text().split("\n")[4:] == (tmp_path / "science.md").read_text().split("\n")[4:]
