"""An lm-eval multiple-choice task and an lm_loss task as the objectives of one search, run end to
end by `recycle run` on the test-scale demo pool (the issue's CI target)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed: pip install 'recycle[lm-eval]'")

RECYCLE = str(Path(sys.executable).parent / "recycle")
NEXT_LINE = Path(__file__).resolve().parents[2] / "evaluator" / "lm_eval_tasks" / "next_line.yaml"
BUDGET = 8


def test_an_lm_eval_task_and_an_lm_loss_task_are_searched_together(demo_pool, tmp_path):
    lm_loss = demo_pool.tasks[0]
    next_line = {"name": "next_line", "kind": "lm_eval", "path": str(NEXT_LINE), "metric": "acc",
                 "max_items": 24, "seq_len": 64, "batch_size": 8}
    search = {"pool": demo_pool.pool.model_dump(mode="json"),
              "tasks": [lm_loss.model_dump(mode="json", exclude_none=True), next_line],
              "strategy": "tpe", "budget": BUDGET, "concurrency": 2, "seed": 3}
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(search))
    out = tmp_path / "run"
    done = subprocess.run([RECYCLE, "run", str(tmp_path / "search.yaml"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == BUDGET and all(t["status"] == "ok" for t in trials), [t["error"] for t in trials]
    for trial in trials:
        for scores in (trial["scores"], trial["report"]):
            assert set(scores) == {lm_loss.name, "next_line"}
            assert math.isfinite(scores[lm_loss.name]) and scores[lm_loss.name] > 0
            assert scores["next_line"] in {k / 24 for k in range(25)}  # a share of 24 questions
    # The merges differ, and so do their answers: the lm-eval objective follows the model merged into.
    assert len({t["scores"]["next_line"] for t in trials}) > 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == BUDGET and summary["front"]
    # Accuracy is maximized, the loss minimized: the normalization's ideal is each one's best.
    ideal = summary["normalization"]["ideal"]
    assert ideal["next_line"] == -max(t["scores"]["next_line"] for t in trials)
    assert ideal[lm_loss.name] == min(t["scores"][lm_loss.name] for t in trials)
    # The verdict resamples the lm-eval documents' groups (their source files), not one unit.
    comparisons = summary["held_out"]["comparisons"]["optimized merge"].values()
    assert all(c["groups"]["next_line"] > 1 and c["bootstrap_unit"] == "group" for c in comparisons)
