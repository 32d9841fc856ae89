"""Offline text corpora that ship with every CPython install, one per domain.

Each domain yields source documents (a file, a doc topic) as (source id, text).
`split_domain` assigns whole sources to the evaluation or the training side before
chunking them, so no file or topic ever contributes text to both sides.
"""

from __future__ import annotations

import hashlib
import math
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

Source = tuple[str, str]  # (source id, text)

# The stdlib folder also holds installed packages, test suites and the doc topics
# (the prose domain): none of them may leak into the code domain.
_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "pydoc_data", "__pycache__"})


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def _files(root: Path, pattern: str, skip_dirs: frozenset[str] = frozenset()) -> Iterator[Source]:
    venv = Path(sys.prefix).resolve() if sys.prefix != sys.base_prefix else None
    for path in sorted(root.rglob(pattern)):
        rel = path.relative_to(root)
        if skip_dirs & set(rel.parts[:-1]):
            continue
        if venv is not None and venv in path.resolve().parents:
            continue
        text = _read(path)
        if text:
            yield rel.as_posix(), text


def python_sources() -> Iterator[Source]:
    yield from _files(Path(sysconfig.get_paths()["stdlib"]), "*.py", _SKIP_DIRS)


def prose_sources() -> Iterator[Source]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield name, topics[name]


def c_sources() -> Iterator[Source]:
    yield from _files(Path(sysconfig.get_paths()["include"]), "*.h")


def decimal_sources() -> Iterator[Source]:
    """IBM's decimal arithmetic test vectors (`test/decimaltestdata/*.decTest`)."""
    root = Path(sysconfig.get_paths()["stdlib"]) / "test" / "decimaltestdata"
    for name, text in _files(root, "*.decTest"):
        # Every file opens with the same copyright block: drop it, keep the vectors.
        lines = text.splitlines(keepends=True)
        start = next((i for i, line in enumerate(lines) if line.strip() and not line.startswith("--")), len(lines))
        yield name, "".join(lines[start:])


DOMAINS: dict[str, Callable[[], Iterator[Source]]] = {
    "python": python_sources,
    "prose": prose_sources,
    "c": c_sources,
    "decimal": decimal_sources,
}
# Skipped where missing: Debian and the official Docker images strip the test suite.
OPTIONAL = frozenset({"decimal"})


def chunk(text: str, max_chars: int) -> list[str]:
    """Cut at line boundaries into pieces of at most max_chars (longer lines are cut)."""
    pieces, current = [], ""
    for line in text.splitlines(keepends=True):
        while len(line) > max_chars:
            pieces.append(line[:max_chars])
            line = line[max_chars:]
        if len(current) + len(line) > max_chars:
            pieces.append(current)
            current = ""
        current += line
    pieces.append(current)
    return [p for p in pieces if p.strip()]


def split_domain(
    name: str,
    sources: list[Source],
    *,
    n_eval: int,
    n_train: int,
    max_chars: int,
    min_chars: int,
    seed: int,
    eval_per_source: int | None = None,
) -> tuple[list[str], list[Source]]:
    """(train docs, eval docs as (source id, text)) for one domain, disjoint by source and by text.

    Sources are visited in a seeded-hash order; the first ones fill the evaluation
    set, the rest the training set. Each source gives a bounded number of evenly
    spaced chunks, so one huge file cannot dominate either side; `eval_per_source` caps the
    evaluation side's chunks per source lower, so that it spans more sources (the independent
    units of the verdict's statistics). Exact
    duplicate chunks (license headers, empty stubs) are kept once, on the first side
    that saw them.
    """
    if not sources:
        raise RuntimeError(f"corpus {name!r}: no documents found in this Python installation")
    order = sorted(sources, key=lambda s: hashlib.sha256(f"{seed}:{s[0]}".encode()).hexdigest())
    train: list[str] = []
    evaluation: list[Source] = []
    seen: set[str] = set()
    # Enough per source to fill both sides even when half the sources are short.
    chunks_per_source = math.ceil(2 * (n_eval + n_train) / len(sources))
    for source, text in order:
        evaluating = len(evaluation) < n_eval
        if len(train) >= n_train:
            break
        pieces = [p for p in chunk(text, max_chars) if len(p) >= min_chars]
        step = max(1, len(pieces) // chunks_per_source)
        cap = min(chunks_per_source, eval_per_source or chunks_per_source) if evaluating else chunks_per_source
        for piece in pieces[::step][:cap]:
            if piece not in seen:
                seen.add(piece)
                if evaluating:  # with its source: the group the evaluator splits and resamples by
                    evaluation.append((source, piece))
                else:
                    train.append(piece)
    if len(evaluation) < n_eval or not train:
        raise RuntimeError(f"corpus {name!r} too small: {len(evaluation)} eval / {len(train)} train docs")
    return train[:n_train], evaluation
