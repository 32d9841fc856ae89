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


def test_module_class_runs_get_their_own_section_beside_the_layer_group_ones(tmp_path):
    sys.path.insert(0, str(ROOT))
    from bench.layers import configs, write_markdown

    runs = configs("module_classes", 4, 64, 128)
    assert list(runs) == ["global-64", "global-128", "classes-128"]
    assert runs["classes-128"][1].per == "module_classes" and runs["classes-128"][1].n_groups == 4
    assert list(configs("layer_groups", 4, 64, 128)) == ["global-64", "global-128", "groups4-128"]

    interval = {"diff": 0.01, "lo": -0.02, "hi": 0.04}
    def run(label, macro, layout=None):
        line = {"run": label, "pool_seed": 3, "search_seed": 210, "budget": 128, "held_out_macro": macro,
                "search_macro": 0.1, "merge_source": "tpe", "group_spread": 0.0, "seconds": 1.0,
                **{k: interval for k in ("vs_best_single", "vs_uniform", "vs_greedy")}}
        return line if layout is None else {**line, "layout": layout}  # lines from before --layout have none
    comparison = {"search_seed": 210, "pool_seed": 3, **interval, "p_holm": 1.0, "family_size": 3}
    lines = [run("global-128", -0.30), run("groups4-128", -0.29), {**comparison, "comparison": "groups4-128 vs global-128"},
             run("global-128", -0.31, "module_classes"), run("classes-128", -0.28, "module_classes"),
             {**comparison, "comparison": "classes-128 vs global-128", "layout": "module_classes"}]
    write_markdown(tmp_path / "layers.md", lines, "python bench/layers.py")
    text = (tmp_path / "layers.md").read_text()
    groups, classes = text.index("## A weight vector per layer group"), text.index("## A weight vector per module class")
    assert groups < classes < text.index("## Every run")
    assert "| global-128 | 128 | -0.3000 |" in text[groups:classes] and "| global-128 | 128 | -0.3100 |" in text[classes:]
    assert "classes-128 vs global-128" in text[classes:] and "classes-128" not in text[groups:classes]
