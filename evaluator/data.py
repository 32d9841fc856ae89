"""Task data: JSONL loading, the search/report split, and tokenized windows.

Splits are made per group (never per window) by a seeded hash of the row's
`group` (e.g. the source file or conversation a document was cut from); a row
without one is a group of its own, hashed by its text. So all documents of one
source land in the same split no matter how the file is ordered, and no text of
a held-out source is ever searched on. The group is also the independent unit the
verdict's bootstrap resamples (recycle.local.significance).
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


def split_of(group: str, spec: TaskSpec) -> str:
    digest = hashlib.sha256(f"{spec.split_seed}\0{group}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "little") / 2**64
    return "report" if fraction < spec.report_fraction else "search"


def group_of(row: dict, text: str, where: str) -> str:
    """The row's `group` (a string or an integer), or its own text's when it has none."""
    group = row.get("group")
    if group is None:
        return "text\0" + text
    if isinstance(group, bool) or not isinstance(group, (str, int)) or group == "":
        raise TaskDataError(f"{where}: \"group\" must be a non-empty string or an integer")
    return f"group\0{group}"


def split_rows(rows: list[dict], spec: TaskSpec, key) -> dict[str, list[tuple[str, dict]]]:
    """(group, row) pairs by split; `key(row)` is the text that stands for an ungrouped row."""
    splits = {name: [] for name in SPLITS}
    for number, row in enumerate(rows, 1):
        group = group_of(row, key(row), f"{spec.path}: row {number}")
        splits[split_of(group, spec)].append((group, row))
    for name, members in splits.items():
        if not members:
            raise TaskDataError(
                f"task {spec.name!r}: the {name} split is empty; add documents to {spec.path} "
                f"or change report_fraction ({spec.report_fraction})"
            )
    return splits


def lm_windows(
    documents: list[tuple[str, str]], tokenizer, seq_len: int, max_items: int
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Cut (group, text) documents into non-overlapping windows; returns (input_ids, mask),
    both [n, seq_len], and each window's group.

    The first `max_items` windows in document order are kept, so every trial is
    scored on exactly the same tokens (paired comparisons between merges).
    """
    eos = tokenizer.eos_token_id
    windows: list[list[int]] = []
    groups: list[str] = []
    for group, text in documents:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if eos is not None:
            ids = ids + [eos]
        for start in range(0, len(ids), seq_len):
            window = ids[start : start + seq_len]
            if len(window) >= 2:  # a window needs one predicted token
                windows.append(window)
                groups.append(group)
            if len(windows) == max_items:
                break
        if len(windows) == max_items:
            break
    input_ids = torch.zeros(len(windows), seq_len, dtype=torch.long)
    mask = torch.zeros(len(windows), seq_len, dtype=torch.long)
    for row, window in enumerate(windows):
        input_ids[row, : len(window)] = torch.tensor(window)
        mask[row, : len(window)] = 1
    return input_ids, mask, groups


def padded(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids right-padded with 0 into one tensor (at least one column), and the mask of the
    real tokens. Right padding follows every real token: under a causal mask it changes none of
    their logits."""
    ids = torch.zeros(len(sequences), max(1, *(len(s) for s in sequences)), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, sequence in enumerate(sequences):
        ids[i, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[i, : len(sequence)] = 1
    return ids, mask
