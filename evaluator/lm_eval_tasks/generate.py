"""Writes next_line.jsonl, the data of next_line.yaml: which line of a Python stdlib file comes next?

Run `python -m evaluator.lm_eval_tasks.generate` to regenerate it. The file is committed, so
the task reads the same questions on every machine (the stdlib differs between Python
versions) and nothing is generated or downloaded at run time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from recycle.demo.corpora import chunk, python_sources
from recycle.demo.questions import next_line_questions

OUT = Path(__file__).with_name("next_line.jsonl")
SOURCES = 60  # files, in a seeded-hash order: each question's group is its file
CHUNK_CHARS = 1200  # the piece of each file questions are drawn from
SEED = 0


def questions() -> list[dict]:
    sources = sorted(python_sources(), key=lambda s: hashlib.sha256(f"{SEED}:{s[0]}".encode()).hexdigest())
    documents = []
    for source, text in sources:
        pieces = [piece for piece in chunk(text, CHUNK_CHARS) if piece.count("\n") >= 12]
        if pieces:
            documents.append((source, pieces[len(pieces) // 2]))
        if len(documents) == SOURCES:
            break
    return next_line_questions(documents, group_prefix="python", per_document=2, seed=SEED)


def main() -> None:
    rows = questions()
    OUT.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows), encoding="utf-8")
    print(f"{OUT}: {len(rows)} questions from {len({row['group'] for row in rows})} files")


if __name__ == "__main__":
    main()
