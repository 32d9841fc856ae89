"""The demo's multiple-choice questions, built offline: word-swap minimal pairs and next lines."""

from __future__ import annotations

from collections import Counter

from recycle.demo.questions import CONTEXT_LINES, next_line_questions, word_swap_questions

DOCUMENTS = [
    (f"src{s}.c", "\n".join(f"static int value_{s}_{i} = compute(left_{i}, right_{i}) + offset;" for i in range(12)))
    for s in range(6)
] + [("short.c", "int a;\nint b;\nint c;\nint d;\nint e;\nint f;")]


def test_word_swap_choices_are_the_answer_with_two_words_exchanged():
    rows = word_swap_questions(DOCUMENTS, group_prefix="c", per_document=3, seed=1)
    assert len(rows) == 6 * 3  # "short.c" has no line long enough to ask about
    for row in rows:
        answer = row["choices"][row["answer"]]
        assert len(set(row["choices"])) == 4 and row["group"].startswith("c:src")
        assert row["context"].count("\n") == CONTEXT_LINES and answer not in row["context"]
        for choice in row["choices"]:
            if choice == answer:
                continue
            # Same words (a log-likelihood scorer cannot win on vocabulary or length), two places differ.
            assert Counter(choice.split()) == Counter(answer.split())
            assert sum(a != b for a, b in zip(choice.split(), answer.split())) == 2
    assert Counter(row["answer"] for row in rows).most_common(1)[0][1] < len(rows)  # the answer's place varies


def test_questions_are_reproducible_from_the_seed():
    for build in (word_swap_questions, next_line_questions):
        assert build(DOCUMENTS, group_prefix="c", seed=5) == build(DOCUMENTS, group_prefix="c", seed=5)
        assert build(DOCUMENTS, group_prefix="c", seed=5) != build(DOCUMENTS, group_prefix="c", seed=6)


def test_next_line_distractors_come_from_other_sources():
    rows = next_line_questions(DOCUMENTS, group_prefix="c", per_document=2, seed=0)
    assert rows
    for row in rows:
        source = row["group"].removeprefix("c:")
        own = dict(DOCUMENTS)[source]
        wrong = [c for i, c in enumerate(row["choices"]) if i != row["answer"]]
        assert all(c not in own for c in wrong) and row["choices"][row["answer"]] in own
