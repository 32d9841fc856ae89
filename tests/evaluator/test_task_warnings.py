"""Settings a task cannot honour are said once (logging warning), however many evaluators build it."""

from __future__ import annotations

import json
import logging

from transformers import AutoTokenizer

from contracts import TaskSpec
from evaluator.tasks import make_task


def test_a_cut_window_and_a_short_split_are_warned_once(demo_pool, tmp_path, caplog):
    path = tmp_path / "few.jsonl"
    path.write_text("".join(json.dumps({"text": f"def f{i}(x):\n    return x + {i}\n"}) + "\n" for i in range(12)))
    spec = TaskSpec(name="few", kind="lm_loss", path=str(path), seq_len=4096, max_items=64)
    tokenizer = AutoTokenizer.from_pretrained(demo_pool.pool.checkpoints[0].path)
    with caplog.at_level(logging.WARNING, logger="evaluator.tasks"):
        tasks = [make_task(spec, tokenizer, max_positions=64) for _ in range(3)]
    assert tasks[0].seq_len == 64
    messages = [r.getMessage() for r in caplog.records]
    assert sum("seq_len 4096 is longer than the model's 64 positions" in m for m in messages) == 1, messages
    for split in ("search", "report"):
        found = len(tasks[0].windows[split][0])
        assert found < 64
        assert sum(f"its {split} split has {found} items, fewer than the 64 asked for" in m for m in messages) == 1, messages
