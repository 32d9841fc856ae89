"""The `recycle` command: merge, run, demo, the services (api, proposer, worker), status, export."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import get_args

import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from contracts import CheckpointRef, MergeSpec, PoolSpec, SearchSpec
from contracts.models import StrategyName
from evaluator.data import TaskDataError
from merger import CheckpointPool, PoolError, WeightsError, export_merge
from recycle.local import report
from recycle.demo.finetune import BASE
from recycle.local.runtime import run_search
from recycle.settings import Settings
from recycle.demo.smollm2_pool import BaseModelMissing
from recycle.local.verdict import StaleRunError, held_out_verdict

# Logs and pipes get a wide table instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)
STRATEGY_NAMES = get_args(StrategyName)
DEMO_BUDGETS = {"tiny": 48, "smollm2": 64}
# Trials at the end of a demo search that may probe the checkpoints no merge dominates yet
# (SearchOptions.dominance_probes); the strategy gets those no probe needs.
DEMO_DOMINANCE_PROBES = 8
# The demo pools are a base and its specialists. linear: the paper's weighted average of the whole
# pool (weights on the simplex). task-arithmetic: base + sum_i w_i (specialist_i - base), each w_i
# in [0, --max-weight]: a specialist can keep all of its fine-tuning while some of the others' is added.
DEMO_MERGES = {"linear": MergeSpec(), "task-arithmetic": MergeSpec(normalize=False, base=BASE)}
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16"}


class UsageError(Exception):
    """A problem with what the user asked for: printed without a traceback, exit 2."""


def torch_dtype(name: str | None):
    if name is None:
        return None
    import torch

    if name not in DTYPES:
        raise UsageError(f"unknown dtype {name!r}; choose one of {', '.join(sorted(DTYPES))}")
    return getattr(torch, DTYPES[name])


def checkpoint_name(path: str, taken: set[str]) -> str:
    """A pool name from a path (its folder or file stem), made unique."""
    stem = Path(path.rstrip("/")).name.removesuffix(".safetensors") or "checkpoint"
    name = "".join(c if c.isalnum() or c in "_.-" else "-" for c in stem)[:60] or "checkpoint"
    candidate, suffix = name, 2
    while candidate in taken:
        candidate, suffix = f"{name}-{suffix}", suffix + 1
    taken.add(candidate)
    return candidate


def command_merge(args) -> int:
    taken: set[str] = set()
    pool_spec = PoolSpec(
        name="cli", checkpoints=[CheckpointRef(name=checkpoint_name(p, taken), path=str(Path(p).resolve())) for p in args.checkpoints]
    )
    merge = MergeSpec(normalize=not args.no_normalize, base=pool_spec.checkpoints[args.base].name if args.base is not None else None)
    pool = CheckpointPool.open(pool_spec)
    out = export_merge(pool, merge, args.weights, Path(args.out), dtype=torch_dtype(args.dtype))
    console.print(f"merged {len(pool.names)} checkpoints into {out}")
    return 0


def load_search_file(path: Path) -> SearchSpec:
    """Read a search YAML; relative checkpoint and task paths are relative to the file."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a mapping with pool, tasks, strategy, budget, ...")
    base = path.resolve().parent
    for checkpoint in (raw.get("pool") or {}).get("checkpoints") or []:
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get("path"), str):
            checkpoint["path"] = str(base / checkpoint["path"])
    for task in raw.get("tasks") or []:
        if isinstance(task, dict) and isinstance(task.get("path"), str):
            task["path"] = str(base / task["path"])
    return SearchSpec.model_validate(raw)


def run_one(spec: SearchSpec, search_id: str, run_dir: Path, workers: int | None, device: str) -> list:
    """Run one search into `run_dir` (search.json, trials.jsonl, summary.json, front.png); print its front."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "search.json").write_text(spec.model_dump_json(indent=2))
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"), console=console,
    ) as progress:
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
    report.print_front(results, spec.objectives, spec.pool.names, console)
    plot = report.plot_front(results, spec.objectives, run_dir / "front.png",
                             title=f"recycle {spec.strategy} on {spec.pool.name}: trials and Pareto front (search split)")
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    console.print(f"{len(results)} trials in {elapsed:.0f} s; trials: {run_dir / 'trials.jsonl'}; plot: {plot}")
    return results


def run_and_report(specs: dict[str, SearchSpec], out_dir: Path, workers: int | None, device: str) -> int:
    """Run each search (one per label, on the same pool and tasks), then judge the selected merges
    on the held-out split with paired bootstrap intervals and export the best one."""
    runs, search_ids = {}, {}
    for label, spec in specs.items():
        single = len(specs) == 1
        search_ids[label] = out_dir.name if single else f"{out_dir.name}-{label}"
        runs[label] = spec, run_one(spec, search_ids[label], out_dir if single else out_dir / label, workers, device)
    return judge(runs, search_ids, out_dir, device)


def judge(runs: dict, search_ids: dict[str, str], out_dir: Path, device: str) -> int:
    """The held-out verdict of finished searches (label -> (spec, results)): printed, added to
    out_dir/summary.json, and the best merge exported to out_dir/best-merge if not there yet."""
    console.print("[bold]held-out verdict[/]: scoring the baselines, the selected merges and the front members that dominate a single, window by window")
    verdict = held_out_verdict(runs, device=device)
    summary_path = out_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if verdict is None:
        console.print("no verdict: a search needs a single checkpoint and a merge that succeeded")
        return 0
    first = next(iter(runs.values()))[0]
    report.print_verdict(verdict, first.pool.names, first.objectives, console)
    # Exported: the best merge on the search split, a soup included (what a user would deploy).
    best = min((e for e in verdict.entries if e.label != "best single"),
               key=lambda e: report.macro(e.result, first.objectives, "scores"))
    summary["held_out"] = {**verdict.as_dict(), "best_single": verdict.entry("best single").held_out_macro,
                           "best_merge": best.held_out_macro, "best_merge_trial": best.result.trial_id,
                           "margin_over_best_single": verdict.entry("best single").held_out_macro - best.held_out_macro}
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    from merger import export_trial

    export_dir = out_dir / "best-merge"
    if not export_dir.exists():
        label = next(label for label, (_, results) in runs.items() if best.result in results)
        export_trial(search_ids[label], runs[label][0], best.result, export_dir)
    console.print(f"best merge ({best.label}, selected on the search split) in {export_dir}")
    return 0


def command_verdict(args) -> int:
    """Judge the finished searches of a `recycle run` or `recycle demo` directory again."""
    from contracts import TrialResult

    out_dir = Path(args.run_dir)
    search_files = [out_dir / "search.json"] if (out_dir / "search.json").is_file() else sorted(out_dir.glob("*/search.json"))
    if not search_files:
        raise UsageError(f"{out_dir} holds no search.json (nor */search.json): not a run directory")
    runs, search_ids = {}, {}
    for path in search_files:
        spec = SearchSpec.model_validate_json(path.read_text())
        trials = path.parent / "trials.jsonl"
        if not trials.is_file():
            raise UsageError(f"{trials} is missing: that search never ran")
        results = [TrialResult.model_validate_json(line) for line in trials.read_text().splitlines() if line.strip()]
        label = spec.strategy if path.parent == out_dir else path.parent.name  # demo: one folder per strategy
        runs[label] = spec, results
        search_ids[label] = results[0].search_id if results else label
    return judge(runs, search_ids, out_dir, args.device or Settings().resolved_device())


def command_run(args) -> int:
    spec = load_search_file(Path(args.search))
    out = Path(args.out) if args.out else Settings().data_dir / "runs" / time.strftime("search-%Y%m%d-%H%M%S")
    return run_and_report({spec.strategy: spec}, out, args.workers, args.device or Settings().resolved_device())


def command_demo(args) -> int:
    settings = Settings()
    strategies = [s.strip() for s in args.strategy.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGY_NAMES]
    if unknown or not strategies:
        raise UsageError(f"unknown strategy {', '.join(unknown) or '(none)'}; choose from {', '.join(STRATEGY_NAMES)}")
    if args.max_weight != 1.0 and args.merge == "linear":
        raise UsageError("--max-weight bounds task-arithmetic weights (--merge task-arithmetic); linear weights are on the simplex")
    if not 1.0 <= args.max_weight <= 4.0:
        raise UsageError(f"--max-weight must be in [1, 4], got {args.max_weight}")
    console.print(f"[bold]recycle demo[/]: building (or reusing) the {args.pool} checkpoint pool in {settings.pool_cache_dir}")
    if args.pool == "smollm2":
        from recycle.demo.smollm2_pool import build_smollm2_pool  # noqa: PLC0415 - transformers' GGUF path is slow to import

        demo = build_smollm2_pool(settings.pool_cache_dir / "smollm2", seed=args.seed, log=console.print)
    else:
        from recycle.demo.tiny_pool import build_demo_pool

        demo = build_demo_pool(settings.pool_cache_dir / "demo", seed=args.seed, log=console.print)
    budget = args.budget or DEMO_BUDGETS[args.pool]
    specs = {
        strategy: SearchSpec(pool=demo.pool, tasks=demo.tasks, strategy=strategy, budget=budget,
                             concurrency=args.workers, seed=args.seed, shrunk_singles=0.1, merge=DEMO_MERGES[args.merge],
                             max_weight=args.max_weight, report_every_trial=False,
                             dominance_probes=DEMO_DOMINANCE_PROBES)
        for strategy in strategies
    }
    out = Path(args.out) if args.out else settings.data_dir / "runs" / time.strftime(f"demo-{args.pool}-%Y%m%d-%H%M%S")
    return run_and_report(specs, out, args.workers, args.device or settings.resolved_device())


def setup_logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def command_api(args) -> int:
    from prometheus_client import CollectorRegistry
    from waitress import serve

    from api import create_app
    from proposer.redis_store import RedisStore
    from recycle.serve.api_wiring import make_services
    from recycle.serve.metrics import ApiMetrics

    settings = Settings()
    if not settings.allowed_roots:
        raise UsageError("set RECYCLE_ALLOWED_ROOTS (a JSON list of folders pools may be read from)")
    if settings.api_token is None:
        raise UsageError("set RECYCLE_API_TOKEN: mutating calls need a bearer token")
    setup_logging()
    registry = CollectorRegistry()
    app = create_app(settings, RedisStore.from_url(settings.redis_url), make_services(settings), registry, ApiMetrics.create(registry))
    serve(app, host=args.host, port=args.port, threads=args.threads)
    return 0


def command_proposer(args) -> int:
    import signal

    from prometheus_client import CollectorRegistry, start_http_server

    from proposer.redis_store import RedisStore
    from recycle.serve.celery_app import make_celery
    from recycle.serve.metrics import ProposerMetrics
    from recycle.serve.proposer_service import ProposerService, celery_sender

    settings = Settings()
    setup_logging()
    registry = CollectorRegistry()
    metrics = ProposerMetrics.create(registry)
    if args.metrics_port:
        start_http_server(args.metrics_port, registry=registry)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    service = ProposerService(RedisStore.from_url(settings.redis_url), celery_sender(make_celery(settings.redis_url, settings.broker_visibility_timeout_s)), metrics)
    service.run_forever(should_stop=lambda: bool(stopping))
    return 0


def command_worker(args) -> int:
    from recycle.serve.worker import run_worker  # imported here: metrics must see PROMETHEUS_MULTIPROC_DIR first

    setup_logging()
    run_worker(concurrency=args.concurrency, metrics_port=args.metrics_port)
    return 0


def open_store(settings):
    """The Redis store the services share (RECYCLE_REDIS_URL), or a clear error."""
    import redis

    from proposer.redis_store import RedisStore

    store = RedisStore.from_url(settings.redis_url)
    try:
        store.ping()
    except redis.RedisError as error:
        raise UsageError(f"cannot reach Redis at {safe_url(settings.redis_url)} ({error}); set RECYCLE_REDIS_URL") from None
    return store


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    import re

    return re.sub(r"//[^@/]*@", "//***@", url)


def find_search_spec(store, search_id: str):
    spec = store.get_search(search_id)
    if spec is None:
        known = store.list_searches()
        hint = f"; known: {', '.join(known[-5:])}" if known else "; the store has no searches"
        raise UsageError(f"no search {search_id!r}{hint}")
    return spec


def command_status(args) -> int:
    from rich.table import Table

    from api.views import search_view

    settings = Settings()
    store = open_store(settings)
    if args.search:
        spec = find_search_spec(store, args.search)
        view = search_view(store, args.search, spec)
        if args.json:
            print(json.dumps(view, indent=2))
            return 0
        best = view["best"] or {}
        rate = view["trials_per_s"]
        console.print(
            f"[bold]{args.search}[/]  {view['status']}  {view['done'] + view['failed']}/{view['budget']} trials"
            f" ({view['failed']} failed, {view['in_flight']} in flight)  {spec.strategy} on pool {spec.pool.name}"
            + (f"  {rate:.2f} trials/s" if rate else "")
        )
        if best:
            console.print(f"best macro-average {best['macro_average']:.4f} (trial {best['trial_id']}, {best['source']});"
                          f" hypervolume {view['hypervolume'] or 0:.4f}")
        results = store.results(args.search)
        if any(r.status.value == "ok" for r in results):
            report.print_front(results, spec.objectives, spec.pool.names, console)
        else:
            console.print("no finished trials yet")
        return 0

    views = [search_view(store, s, find_search_spec(store, s)) for s in reversed(store.list_searches())]
    if args.json:
        print(json.dumps(views, indent=2))
        return 0
    if not views:
        console.print(f"no searches in {safe_url(settings.redis_url)}")
        return 0
    table = Table(title=f"searches in {safe_url(settings.redis_url)}, newest first",
                  caption="trials: settled/budget; macro: mean task loss, search split (held-out: report split), lower is better")
    table.add_column("search", no_wrap=True, min_width=max(len(v["id"]) for v in views))  # ids are never cut
    for column in ["status", "pool", "strategy"]:
        table.add_column(column)
    for column in ["trials", "in flight", "trials/s", "best macro", "held-out", "hypervolume"]:
        table.add_column(column, justify="right")
    colours = {"running": "cyan", "paused": "yellow", "completed": "green", "failed": "red", "cancelled": "dim"}

    def number(value, digits=4):
        return "-" if value is None else f"{value:.{digits}f}"

    for view in views:
        best = view["best"] or {}
        failed = f" ({view['failed']} failed)" if view["failed"] else ""
        table.add_row(
            view["id"], f"[{colours.get(view['status'], 'white')}]{view['status']}[/]", view["pool"], view["strategy"],
            f"{view['done'] + view['failed']}/{view['budget']}{failed}", str(view["in_flight"]),
            number(view["trials_per_s"], 2), number(best.get("macro_average")), number(best.get("report_macro_average")),
            number(view["hypervolume"]),
        )
    console.print(table)
    return 0


def command_export(args) -> int:
    from api.views import search_view
    from contracts import Proposal, TrialStatus
    from merger import export_trial

    settings = Settings()
    store = open_store(settings)
    spec = find_search_spec(store, args.search)
    if args.trial == "best":
        best = search_view(store, args.search, spec)["best"]
        if best is None:
            raise UsageError(f"search {args.search!r} has no successful trial yet")
        trial_id = best["trial_id"]
    elif args.trial.isdigit():
        trial_id = Proposal.make_trial_id(args.search, int(args.trial))
    else:
        trial_id = args.trial
    result = store.get_result(args.search, trial_id)
    if result is None:
        raise UsageError(f"search {args.search!r} has no result for trial {args.trial!r} (give a trial id, a number or 'best')")
    if result.status is not TrialStatus.ok:
        raise UsageError(f"trial {trial_id} failed ({result.error}); only successful trials can be exported")
    out = export_trial(args.search, spec, result, Path(args.out), allowed_roots=settings.allowed_roots or None,
                       dtype=torch_dtype(args.dtype))
    weights = " ".join(f"{n}={w:.3f}" for n, w in zip(spec.pool.names, result.proposal.weights) if abs(w) > 0.0005)
    console.print(f"exported trial {trial_id} ({result.proposal.source}) to {out}: HF directory, mergekit.yaml, recycle.json")
    console.print(f"weights: {weights}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recycle", description="Search linear merges of a checkpoint pool.")
    commands = parser.add_subparsers(dest="command", required=True)

    merge = commands.add_parser("merge", help="merge checkpoints with given weights into an HF directory")
    merge.add_argument("checkpoints", nargs="+", help="HF checkpoint directories or .safetensors files")
    merge.add_argument("--weights", nargs="+", type=float, required=True, help="one weight per checkpoint")
    merge.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    merge.add_argument("--dtype", help="output dtype: float32, bfloat16, float16 (default: the pool's)")
    merge.add_argument("--no-normalize", action="store_true", help="use weights as given instead of normalizing to sum 1")
    merge.add_argument("--base", type=int, help="index of the base checkpoint for task arithmetic (implies --no-normalize)")
    merge.set_defaults(handler=command_merge)

    run = commands.add_parser("run", help="run a search described by a YAML file, in this process")
    run.add_argument("search", help="search YAML: pool, tasks, strategy, budget, concurrency, seed, merge")
    run.add_argument("--out", help="run directory (default: .cache/runs/search-<time>)")
    run.add_argument("--workers", type=int, help="evaluation threads (default: min(concurrency, cores))")
    run.add_argument("--device", help="cpu, cuda, cuda:N (default: settings)")
    run.set_defaults(handler=command_run)

    demo = commands.add_parser("demo", help="build a demo pool (once) and run searches on it")
    demo.add_argument("--pool", default="tiny", choices=sorted(DEMO_BUDGETS),
                      help="tiny: a 4-layer GPT-2 trained here (minutes); smollm2: SmolLM2-135M-Instruct"
                      " and 8 specialists fine-tuned here, 2 runs per domain (built once: ~20-30 min on 2 cores with native bf16, ~110 min in fp32 on an AVX2-only CPU)")
    demo.add_argument("--strategy", default="tpe,cmaes", help="one search per strategy, comma separated (tpe, cmaes, random)")
    demo.add_argument("--budget", type=int, help="trials per search (default: 48 tiny, 64 smollm2)")
    demo.add_argument("--merge", default="linear", choices=sorted(DEMO_MERGES),
                      help="linear: weights on the simplex over the whole pool (the paper's); task-arithmetic:"
                      " the base plus weighted task vectors of the specialists, each weight in [0, --max-weight]")
    demo.add_argument("--max-weight", type=float, default=1.0,
                      help="task arithmetic: upper bound of each weight (above 1 extrapolates a task vector; default 1)")
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out")
    demo.add_argument("--device")
    demo.set_defaults(handler=command_demo)

    verdict = commands.add_parser("verdict", help="judge the searches of a run or demo directory again, on the held-out split")
    verdict.add_argument("run_dir", help="a directory `recycle run` or `recycle demo` wrote")
    verdict.add_argument("--device", help="cpu, cuda, cuda:N (default: settings)")
    verdict.set_defaults(handler=command_verdict)

    api = commands.add_parser("api", help="serve the HTTP API (waitress)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--threads", type=int, default=8)
    api.set_defaults(handler=command_api)

    proposer = commands.add_parser("proposer", help="run the proposer service for every active search")
    proposer.add_argument("--metrics-port", type=int, default=9101, help="Prometheus port (0: none)")
    proposer.set_defaults(handler=command_proposer)

    worker = commands.add_parser("worker", help="run a Celery worker that merges and evaluates trials")
    worker.add_argument("--concurrency", type=int, default=1, help="worker processes (each keeps its own resident model)")
    worker.add_argument("--metrics-port", type=int, default=9102, help="Prometheus port (0: none)")
    worker.set_defaults(handler=command_worker)

    status = commands.add_parser("status", help="list the searches in Redis, or show one search's front")
    status.add_argument("search", nargs="?", help="a search id: show its progress and Pareto front")
    status.add_argument("--json", action="store_true", help="print what the API's /v1/searches[/<id>] returns")
    status.set_defaults(handler=command_status)

    export = commands.add_parser("export", help="export one trial of a search as an HF directory + mergekit YAML")
    export.add_argument("search", help="search id")
    export.add_argument("trial", help="trial id, trial number, or 'best' (best macro-average on the search split)")
    export.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    export.add_argument("--dtype", help="output dtype: float32, bfloat16, float16 (default: the pool's)")
    export.set_defaults(handler=command_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "base", None) is not None:
        args.no_normalize = True
    try:
        return args.handler(args)
    except ValidationError as error:
        console.print(f"[red]error:[/] invalid input:\n{error}")
    except (UsageError, PoolError, WeightsError, TaskDataError, FileExistsError, BaseModelMissing, StaleRunError) as error:
        console.print(f"[red]error:[/] {error}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
