"""Start-up time of `recycle --help`: this tree, and optionally an older checkout, in one run.

    python bench/cli_startup.py [--old /tmp/old] [--runs 10] [--write docs/results/cli-startup.md]

For an older commit: `git worktree add /tmp/old <commit>` (the venv is shared; each tree's
own code is imported, put first on sys.path). Each run is a fresh interpreter; prints one JSON
line per tree (median and min wall seconds, the heavy libraries imported, the slowest imports
by `python -X importtime`, cumulative), no assertions. --write also renders the markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import commit_of, describe

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "matplotlib", "flask", "celery", "numpy", "pydantic")
PROBE = ("import sys; sys.path.insert(0, sys.argv[1]); from recycle.cli import main\n"
         "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
         "print('HEAVY=' + ','.join(sorted({m.split('.')[0] for m in sys.modules} & set(%r))), file=sys.stderr)" % (HEAVY,))


def once(tree: Path, importtime: bool = False) -> tuple[float, str]:
    command = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", PROBE, str(tree)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=tree, check=True)
    return time.perf_counter() - started, done.stderr


def slowest_imports(stderr: str, top: int = 5) -> list[tuple[str, float]]:
    """The heavy libraries and the project's packages by cumulative import time (seconds),
    slowest first; each module appears once in importtime's output, where it was first imported."""
    wanted = set(HEAVY) | {"api", "evaluator", "merger", "proposer", "contracts"}
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, cumulative, name = line.split("|")
            if name.strip() in wanted:
                rows.append((name.strip(), int(cumulative) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:top]


def measure(label: str, tree: Path, runs: int) -> dict:
    times = [once(tree)[0] for _ in range(runs)]
    _, stderr = once(tree, importtime=True)
    heavy = next((line.split("=", 1)[1] for line in stderr.splitlines() if line.startswith("HEAVY=")), "")
    return {"tree": label, "commit": commit_of(tree, ("recycle",)), "runs": runs, "median_s": round(statistics.median(times), 3),
            "min_s": round(min(times), 3), "heavy_imports": heavy.split(",") if heavy else [],
            "slowest_imports_s": [[n, round(s, 3)] for n, s in slowest_imports(stderr)]}


def markdown(rows: list[dict], runs: int) -> str:
    lines = [
        "# `recycle --help` start-up time",
        "",
        f"Regenerate: `python bench/cli_startup.py --old /tmp/old --runs {runs} --write docs/results/cli-startup.md`",
        "(after `git worktree add /tmp/old <older commit>`; each tree imports its own code, one venv).",
        f"Machine: {describe(load=True, python=True)}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| tree | commit | median s | min s | heavy libraries imported | slowest packages imported (cumulative s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        slow = ", ".join(f"{n} {s:.2f}" for n, s in r["slowest_imports_s"])
        lines.append(f"| {r['tree']} | {r['commit']} | {r['median_s']:.3f} | {r['min_s']:.3f} | {', '.join(r['heavy_imports']) or 'none'} | {slow or 'none'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, help="an older checkout to time in the same run")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--write", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    trees = [("this tree", ROOT)] + ([("old", args.old.resolve())] if args.old else [])
    rows = []
    for label, tree in trees:
        rows.append(measure(label, tree, args.runs))
        print(json.dumps(rows[-1]), flush=True)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(markdown(rows, args.runs))


if __name__ == "__main__":
    main()
