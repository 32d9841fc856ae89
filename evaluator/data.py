"""Task data: JSONL loading, the search/report split, and tokenized windows.

Splits are made per document (never per window) by a seeded hash of the
document text, so the same document always lands in the same split no matter
how the file is ordered, and a window of held-out text is never searched on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from contracts import TaskSpec

SPLITS = ("search", "report")


class TaskDataError(ValueError):
    """A task file is missing, malformed, or too small to evaluate on."""


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise TaskDataError(f"task file not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise TaskDataError(f"{path}:{line_number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise TaskDataError(f"{path}:{line_number}: each line must be a JSON object")
            rows.append(row)
    if not rows:
        raise TaskDataError(f"task file is empty: {path}")
    return rows


def split_of(text: str, spec: TaskSpec) -> str:
    digest = hashlib.sha256(f"{spec.split_seed}\0{text}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "little") / 2**64
    return "report" if fraction < spec.report_fraction else "search"


def split_rows(rows: list[dict], spec: TaskSpec, key) -> dict[str, list[dict]]:
    """Group rows by split; `key(row)` is the text that decides a row's split."""
    splits = {name: [] for name in SPLITS}
    for row in rows:
        splits[split_of(key(row), spec)].append(row)
    for name, members in splits.items():
        if not members:
            raise TaskDataError(
                f"task {spec.name!r}: the {name} split is empty; add documents to {spec.path} "
                f"or change report_fraction ({spec.report_fraction})"
            )
    return splits


def lm_windows(texts: list[str], tokenizer, seq_len: int, max_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut documents into non-overlapping windows; returns (input_ids, mask), both [n, seq_len].

    The first `max_items` windows in document order are kept, so every trial is
    scored on exactly the same tokens (paired comparisons between merges).
    """
    eos = tokenizer.eos_token_id
    windows: list[list[int]] = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if eos is not None:
            ids = ids + [eos]
        for start in range(0, len(ids), seq_len):
            window = ids[start : start + seq_len]
            if len(window) >= 2:  # a window needs one predicted token
                windows.append(window)
            if len(windows) == max_items:
                break
        if len(windows) == max_items:
            break
    input_ids = torch.zeros(len(windows), seq_len, dtype=torch.long)
    mask = torch.zeros(len(windows), seq_len, dtype=torch.long)
    for row, window in enumerate(windows):
        input_ids[row, : len(window)] = torch.tensor(window)
        mask[row, : len(window)] = 1
    return input_ids, mask
