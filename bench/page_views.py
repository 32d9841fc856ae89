"""What the status page costs the API per poll: the search view, a page of trial rows and the
history (first request, then cached), on searches recorded straight into a MemoryStore
(tests/pages/recorded.py: 4 checkpoints, 2 or 4 objectives, most trials on the front with 4).

    python bench/page_views.py [--write docs/results/status-page.md]

One JSON line per search size; no assertions. `history_recount_s` is the history with the
hypervolume recounted from scratch after every new front member (what api/history.py's
incremental `gain` replaced), measured up to --recount-max trials.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api import history
from api.views import search_view, trials_page
from proposer import MemoryStore, ParetoArchive, normalization_of
from tests.pages.recorded import record

SIZES = ((2, 500), (4, 200), (4, 500))


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def recount(store, spec) -> float:
    """The hypervolume after every result, recounted in full whenever the front changes."""
    results = store.results("s")
    scale = normalization_of(spec, results)
    archive, volume = ParetoArchive(spec.objectives), 0.0
    for result in results:
        if archive.add(result):
            volume = archive.hypervolume(scale.reference, scale.losses)
    return volume


def measure(objectives: int, trials: int, recount_max: int) -> dict:
    store = MemoryStore()
    record(store, "s", objectives, n_trials=trials)
    spec = store.get_search("s")
    history._traces.clear()
    view_s, view = timed(lambda: search_view(store, "s", spec))
    rows_s, _ = timed(lambda: trials_page(store, "s", spec, 0, 10_000))
    first_s, first = timed(lambda: history.search_history(store, "s", spec))
    cached_s, _ = timed(lambda: history.search_history(store, "s", spec))
    line = {"objectives": objectives, "trials": trials, "front": len(view["front"]), "view_s": round(view_s, 3),
            "rows_s": round(rows_s, 3), "history_first_s": round(first_s, 3), "history_cached_s": round(cached_s, 5),
            "history_recount_s": None}
    if trials <= recount_max:
        recount_s, volume = timed(lambda: recount(store, spec))
        line["history_recount_s"] = round(recount_s, 3)
        line["same_hypervolume"] = abs(volume - first["points"][-1]["hypervolume"]) < 1e-9 * max(1.0, volume)
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="also render the results as markdown here")
    parser.add_argument("--recount-max", type=int, default=200)
    args = parser.parse_args()
    lines = []
    for objectives, trials in SIZES:
        lines.append(measure(objectives, trials, args.recount_max))
        print(json.dumps(lines[-1]), flush=True)
    if args.write:
        rows = "\n".join(f"| {r['objectives']} | {r['trials']} | {r['front']} | {r['view_s']} | {r['rows_s']} | "
                         f"{r['history_first_s']} | {r['history_cached_s']} | {r['history_recount_s'] or '–'} |" for r in lines)
        args.write.write_text(f"""# What the status page costs the API

Regenerate: `python bench/page_views.py --write {args.write}`
Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f},
Python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.

Seconds per request body, in-process (no HTTP), on recorded searches (tests/pages/recorded.py).
The page polls the view every 2 s, the trial rows incrementally and the history when a trial
settled; the history's hypervolume grows by each new front member's own gain (api/history.py),
the recount column is the same curve recounted in full after every front change.

| objectives | trials | on the front | search view | all trial rows | history, first | history, cached | history, full recounts |
|---|---|---|---|---|---|---|---|
{rows}
""")


if __name__ == "__main__":
    main()
