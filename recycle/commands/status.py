"""`recycle status`: the searches of Redis or of a run directory as a table, or one search's front."""

from __future__ import annotations

import json

from recycle.commands import common
from recycle.commands.searches import Searches, find_search_spec, open_searches

STATUS_COLOURS = {"running": "cyan", "paused": "yellow", "completed": "green", "failed": "red", "cancelled": "dim"}


def command_status(args) -> int:
    from api.views import search_view
    from recycle.settings import Settings

    searches, one = open_searches(args.search)
    stale_after_s = Settings().lease_ttl_s
    if one is not None:
        spec = find_search_spec(searches, one)
        view = search_view(searches.store, one, spec, stale_after_s)
        if args.json:
            print(json.dumps(view, indent=2))
        else:
            print_search(searches, one, spec, view)
            print_workers(searches, [view], stale_after_s)
        return 0
    views = [search_view(searches.store, s, find_search_spec(searches, s), stale_after_s) for s in searches.ids]
    if args.json:
        print(json.dumps(views, indent=2))
    elif not views:
        common.console.print(f"no searches in {searches.where}")
        print_workers(searches, views, stale_after_s)
    else:
        print_table(views, searches.where)
        print_workers(searches, views, stale_after_s)
        if searches.local:
            common.console.print(f"one search's front: recycle status {args.search.rstrip('/')}/<folder>")
    return 0


def print_workers(searches: Searches, views: list[dict], stale_after_s: float) -> None:
    """The workers' heartbeats (Redis only), and a warning for each running search whose
    trials in flight no live worker is working on."""
    import time

    if searches.local:
        return
    console, now = common.console, time.time()
    workers = searches.store.workers()
    alive = [w for w in workers if w.alive(now, stale_after_s)]
    silent = len(workers) - len(alive)
    console.print(f"workers: {len(alive)} alive" + (f", {silent} silent for over {stale_after_s:g} s" if silent else ""))
    for worker in alive:
        doing = f"trial {worker.current_trial.trial_id}" if worker.current_trial else "idle"
        pools = ", ".join(worker.pools) or "no pool yet"
        console.print(f"  {worker.id}  {worker.device}  {doing}  {worker.trials_done} done  ({pools})")
    for view in views:
        if view["status"] == "running" and view["in_flight"] and not alive:
            console.print(f"[bold red]search {view['id']}: {view['in_flight']} trials in flight and no live worker"
                          " is working on them; start one (recycle worker) or check the workers' logs[/]")


def print_search(searches: Searches, search_id: str, spec, view: dict) -> None:
    """One search: its progress line, best trial and Pareto front."""
    from recycle.local import report

    console = common.console
    best = view["best"] or {}
    rate = view["trials_per_s"]
    console.print(
        f"[bold]{search_id}[/]  {view['status']}  {view['done'] + view['failed']}/{view['budget']} trials"
        f" ({view['failed']} failed, {view['in_flight']} in flight)  {spec.strategy} on pool {spec.pool.name}"
        + (f"  {rate:.2f} trials/s" if rate else "")
    )
    if best:
        console.print(f"best macro-average {best['macro_average']:.4f} (trial {best['trial_id']}, {best['source']});"
                      f" hypervolume {view['hypervolume'] or 0:.4f}")
    results = searches.store.results(search_id)
    if any(r.status.value == "ok" for r in results):
        report.print_front(results, spec, console)
    else:
        console.print("no finished trials yet")


def number(value, digits=4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(views: list[dict], where: str) -> None:
    """One row per search, newest first."""
    from rich.table import Table

    table = Table(title=f"searches in {where}, newest first",
                  caption="trials: settled/budget; macro: mean task loss, search split (held-out: report split), lower is better")
    table.add_column("search", no_wrap=True, min_width=max(len(v["id"]) for v in views))  # ids are never cut
    for column in ["status", "pool", "strategy"]:
        table.add_column(column)
    for column in ["trials", "in flight", "trials/s", "best macro", "held-out", "hypervolume"]:
        table.add_column(column, justify="right")
    for view in views:
        best = view["best"] or {}
        failed = f" ({view['failed']} failed)" if view["failed"] else ""
        table.add_row(
            view["id"], f"[{STATUS_COLOURS.get(view['status'], 'white')}]{view['status']}[/]", view["pool"], view["strategy"],
            f"{view['done'] + view['failed']}/{view['budget']}{failed}", str(view["in_flight"]),
            number(view["trials_per_s"], 2), number(best.get("macro_average")), number(best.get("report_macro_average")),
            number(view["hypervolume"]),
        )
    common.console.print(table)
