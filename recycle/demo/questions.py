"""Multiple-choice questions built offline from evaluation documents: which line comes next?

Each question shows a few lines of a document and asks for the line that follows,
against lines drawn from other sources of similar length (a log-likelihood scorer
sums over the continuation's tokens, so a much shorter distractor would win on
length alone). A question's group is its document's source, as for the lm_loss
tasks: the evaluator splits and the verdict resamples by it.
"""

from __future__ import annotations

import random

MIN_LINE_CHARS = 16  # shorter lines ("}", "#endif") are answered by format alone
CONTEXT_LINES = 4


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def next_line_questions(documents: list[tuple[str, str]], *, group_prefix: str, per_document: int = 2,
                        choices: int = 4, seed: int = 0) -> list[dict]:
    """Rows {"context", "choices", "answer", "group"} from (source, text) documents."""
    rng = random.Random(seed)
    by_source: dict[str, list[str]] = {}
    for source, text in documents:
        by_source.setdefault(source, []).extend(line for line in _lines(text) if len(line) >= MIN_LINE_CHARS)
    rows = []
    for source, text in documents:
        lines = _lines(text)
        positions = [i for i in range(CONTEXT_LINES, len(lines)) if len(lines[i]) >= MIN_LINE_CHARS]
        for i in rng.sample(positions, min(per_document, len(positions))):
            answer = lines[i]
            others = [line for other, candidates in by_source.items() if other != source for line in candidates
                      if 0.7 <= len(line) / len(answer) <= 1.4 and line != answer]
            if len(set(others)) < choices - 1:
                continue
            options = [answer, *rng.sample(sorted(set(others)), choices - 1)]
            rng.shuffle(options)
            context = "\n".join(lines[i - CONTEXT_LINES : i]) + "\n"
            rows.append({"context": context, "choices": options, "answer": options.index(answer),
                         "group": f"{group_prefix}:{source}"})
    return rows
