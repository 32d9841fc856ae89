"""Run directories: what `recycle run` and `recycle demo` write, and how they are read back.

A run directory holds one search (search.json, trials.jsonl, summary.json, front.png) or,
when `recycle demo` ran several strategies, one such folder per strategy. Next to them:
summary.json with the held-out verdict and best-merge/, the exported best merge.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from contracts import SearchSpec, SearchStatus, TrialResult
from recycle.errors import UsageError


@dataclass
class RunSearch:
    """One search of a run directory, read back from its files."""

    label: str  # the strategy, or the demo's folder name
    folder: Path
    spec: SearchSpec
    results: list[TrialResult]
    search_id: str
    finished: bool  # summary.json is written when the search reached its budget


def search_id_for(out_dir: Path, folder: Path, label: str) -> str:
    """The id a search of `out_dir` runs under (and its trial ids start with)."""
    return out_dir.name if folder == out_dir else f"{out_dir.name}-{label}"


def is_run_dir(path: Path) -> bool:
    return (path / "search.json").is_file() or any(path.glob("*/search.json"))


def read_run_dir(out_dir: Path) -> list[RunSearch]:
    """The searches of a run directory, or a UsageError that says why it is not one."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise UsageError(f"{out_dir} is not a directory (give a run directory `recycle run` or `recycle demo` wrote)")
    search_files = [out_dir / "search.json"] if (out_dir / "search.json").is_file() else sorted(out_dir.glob("*/search.json"))
    if not search_files:
        raise UsageError(f"{out_dir} holds no search.json (nor */search.json): not a run directory")
    searches = []
    for path in search_files:
        try:
            spec = SearchSpec.model_validate_json(path.read_text())
        except ValueError as error:
            raise UsageError(f"{path} is not a search spec: {error}") from None
        trials = path.parent / "trials.jsonl"
        results = read_trials(trials) if trials.is_file() else []
        label = spec.strategy if path.parent == out_dir else path.parent.name
        search_id = results[0].search_id if results else search_id_for(out_dir, path.parent, label)
        searches.append(RunSearch(label, path.parent, spec, results, search_id, (path.parent / "summary.json").is_file()))
    return searches


def read_trials(path: Path) -> list[TrialResult]:
    """The results of trials.jsonl; a last line cut short (a run writing it right now) is left out."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    results = [TrialResult.model_validate_json(line) for line in lines[:-1]]
    try:
        results += [TrialResult.model_validate_json(line) for line in lines[-1:]]
    except ValueError:
        pass
    return results


def run_dir_store(searches: list[RunSearch]):
    """The searches in a MemoryStore, so the status and export commands read a run directory as
    they read Redis. Unfinished ones are "running": a run directory cannot tell a live run from one
    that was stopped."""
    from proposer import MemoryStore

    store = MemoryStore()
    for search in searches:
        store.create_search(search.search_id, search.spec)
        for result in search.results:
            store.add_proposal(result.proposal)
            store.record_result(result)
        store.set_status(search.search_id, SearchStatus.completed if search.finished else SearchStatus.running)
    return store


def bar_columns() -> tuple:
    """What every bar of a run shows: name, bar, n/total, time spent, time left."""
    return (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn())


def run_one(spec: SearchSpec, search_id: str, run_dir: Path, workers: int | None, device: str, console: Console) -> list:
    """Run one search into `run_dir` (search.json, trials.jsonl, summary.json, front.png); print its front."""
    from recycle.local import report
    from recycle.local.runtime import run_search

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "search.json").write_text(spec.model_dump_json(indent=2))
    started = time.perf_counter()
    with Progress(*bar_columns(), TextColumn("{task.fields[status]}"), console=console) as progress:
        bar = progress.add_task(f"{spec.strategy} search {search_id}", total=spec.budget, status="opening the pool")

        def on_result(driver, result):
            summary = driver.summary()
            best = summary.get("best") or {}
            status = f"best macro {best.get('macro_average', float('nan')):.4f}  hypervolume {summary.get('hypervolume') or 0:.4f}"
            progress.update(bar, completed=summary["done"] + summary["failed"], status=status)

        driver = run_search(spec, search_id, run_dir / "trials.jsonl", workers=workers, device=device, on_result=on_result)
    elapsed = time.perf_counter() - started
    results = driver.store.results(search_id)
    summary = {**driver.summary(), "seconds": elapsed}
    report.print_front(results, spec, console)
    plot = report.plot_front(results, spec.objectives, run_dir / "front.png",
                             title=f"recycle {spec.strategy} on {spec.pool.name}: trials and Pareto front (search split)")
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    console.print(f"{len(results)} trials in {elapsed:.0f} s; trials: {run_dir / 'trials.jsonl'}; plot: {plot}")
    return results


def run_and_report(specs: dict[str, SearchSpec], out_dir: Path, workers: int | None, device: str, console: Console) -> int:
    """Run each search (one per label, on the same pool and tasks), then judge the selected merges
    on the held-out split with paired bootstrap intervals and export the best one."""
    runs, search_ids = {}, {}
    for label, spec in specs.items():
        folder = out_dir if len(specs) == 1 else out_dir / label
        search_ids[label] = search_id_for(out_dir, folder, label)
        runs[label] = spec, run_one(spec, search_ids[label], folder, workers, device, console)
    code = judge(runs, search_ids, out_dir, device, console)
    one = out_dir if len(specs) == 1 else out_dir / next(iter(specs))
    console.print(f"later: [bold]recycle status {out_dir}[/] (trials, front); [bold]recycle export {one} <trial number>"
                  " --out DIR[/] (any trial as an HF directory + mergekit.yaml)")
    return code


def judge_run_dir(out_dir: Path, device: str, console: Console) -> int:
    """The verdict of a run directory's finished searches, again."""
    searches = read_run_dir(out_dir)
    for search in searches:
        if not (search.folder / "trials.jsonl").is_file():
            raise UsageError(f"{search.folder / 'trials.jsonl'} is missing: that search never ran")
    runs = {s.label: (s.spec, s.results) for s in searches}
    return judge(runs, {s.label: s.search_id for s in searches}, out_dir, device, console)


def judge(runs: dict, search_ids: dict[str, str], out_dir: Path, device: str, console: Console) -> int:
    """The held-out verdict of finished searches (label -> (spec, results)): printed, added to
    out_dir/summary.json, and the best merge exported to out_dir/best-merge if not there yet."""
    from merger import export_trial
    from proposer import normalization_of
    from recycle.local import report
    from recycle.local.verdict import held_out_verdict

    console.print("[bold]held-out verdict[/]: scoring the baselines, the selected merges and the front members that dominate a single, window by window")
    with Progress(*bar_columns(), console=console) as progress:
        bar = progress.add_task("held-out scoring", total=None)
        verdict = held_out_verdict(runs, device=device,
                                   progress=lambda done, total: progress.update(bar, completed=done, total=total))
    summary_path = out_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if verdict is None:
        console.print("no verdict: a search needs a single checkpoint and a merge that succeeded")
        return 0
    first, first_results = next(iter(runs.values()))
    report.print_verdict(verdict, first, console)
    # Exported: the best merge on the search split, a soup included (what a user would deploy).
    # Every search on the pool scores the same singles first: one scale for all.
    scale = normalization_of(first, first_results)
    best = min((e for e in verdict.entries if e.label != "best single"), key=lambda e: report.macro(e.result, scale, "scores"))
    summary["held_out"] = {**verdict.as_dict(), "best_single": verdict.entry("best single").held_out_macro,
                           "best_merge": best.held_out_macro, "best_merge_trial": best.result.trial_id,
                           "margin_over_best_single": verdict.entry("best single").held_out_macro - best.held_out_macro}
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    export_dir = out_dir / "best-merge"
    if not export_dir.exists():
        label = next(label for label, (_, results) in runs.items() if best.result in results)
        export_trial(search_ids[label], runs[label][0], best.result, export_dir)
    console.print(f"best merge ({best.label}, selected on the search split) in {export_dir}")
    return 0
