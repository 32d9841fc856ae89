"""Multiple-choice questions built offline from evaluation documents: which line comes next?

Each question shows a few lines of a document and asks for the line that follows.
Two kinds of wrong choices:

- `word_swap_questions`: the true line with two of its words exchanged, a minimal pair
  in the manner of BLiMP (Warstadt et al. 2020). Every choice has the same words, so a
  log-likelihood scorer cannot win on length or vocabulary: it must know the language's
  word order. The recycling pool's multiple-choice objective. Measured on the dev pool
  (seed 0) only: its singles' accuracies spread over 4.4 binomial standard errors, where
  `next_line_questions` spread over 0.9 (a task of pure noise for a model this small).
- `next_line_questions`: lines drawn from other sources of similar length (a much
  shorter distractor would win on length alone). Harder; the lm-eval example task.

A question's group is its document's source, as for the lm_loss tasks: the evaluator
splits and the verdict resamples by it.
"""

from __future__ import annotations

import random
from collections.abc import Callable

MIN_LINE_CHARS = 16  # shorter lines ("}", "#endif") are answered by format alone
CONTEXT_LINES = 4
MIN_SWAP_WORDS = 4  # enough distinct pairs for three different distractors

Distractors = Callable[[str, str, random.Random], list[str] | None]  # (answer, source, rng) -> wrong choices


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def word_swap_questions(documents: list[tuple[str, str]], *, group_prefix: str, per_document: int = 2,
                        choices: int = 4, seed: int = 0) -> list[dict]:
    """Rows {"context", "choices", "answer", "group"}; wrong choices swap two words of the answer."""

    def swapped(answer: str, _source: str, rng: random.Random) -> list[str] | None:
        indent = answer[: len(answer) - len(answer.lstrip())]
        words = answer.split()
        wrong: set[str] = set()
        for _ in range(50):
            a, b = rng.sample(range(len(words)), 2)
            if words[a] != words[b]:
                variant = words[:]
                variant[a], variant[b] = variant[b], variant[a]
                wrong.add(indent + " ".join(variant))
            if len(wrong) == choices - 1:
                return sorted(wrong)
        return None

    return _questions(documents, swapped, group_prefix, per_document, seed,
                      usable=lambda line: len(set(line.split())) >= MIN_SWAP_WORDS)


def next_line_questions(documents: list[tuple[str, str]], *, group_prefix: str, per_document: int = 2,
                        choices: int = 4, seed: int = 0) -> list[dict]:
    """Rows {"context", "choices", "answer", "group"}; wrong choices are lines of other sources."""
    by_source: dict[str, list[str]] = {}
    for source, text in documents:
        by_source.setdefault(source, []).extend(line for line in _lines(text) if len(line) >= MIN_LINE_CHARS)

    def elsewhere(answer: str, source: str, rng: random.Random) -> list[str] | None:
        others = {line for other, candidates in by_source.items() if other != source for line in candidates
                  if 0.7 <= len(line) / len(answer) <= 1.4 and line != answer}
        return rng.sample(sorted(others), choices - 1) if len(others) >= choices - 1 else None

    return _questions(documents, elsewhere, group_prefix, per_document, seed)


def _questions(documents: list[tuple[str, str]], distractors: Distractors, group_prefix: str, per_document: int,
               seed: int, usable: Callable[[str], bool] = lambda line: True) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for source, text in documents:
        lines = _lines(text)
        positions = [i for i in range(CONTEXT_LINES, len(lines)) if len(lines[i]) >= MIN_LINE_CHARS and usable(lines[i])]
        for i in rng.sample(positions, min(per_document, len(positions))):
            answer = lines[i]
            wrong = distractors(answer, source, rng)
            if wrong is None:
                continue
            options = [answer, *wrong]
            rng.shuffle(options)
            context = "\n".join(lines[i - CONTEXT_LINES : i]) + "\n"
            rows.append({"context": context, "choices": options, "answer": options.index(answer),
                         "group": f"{group_prefix}:{source}"})
    return rows
