"""`recycle run`, `recycle demo`, `recycle verdict`: searches in this process, into run directories."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, get_args

import yaml

from contracts import MergeSpec, SearchSpec
from contracts.models import GROUP_OF, GROUPS, StrategyName
from recycle.commands import common
from recycle.demo.pools import DEMO_POOLS, build_demo
from recycle.errors import UsageError
from recycle.local.rundir import judge_run_dir, run_and_report
from recycle.settings import Settings

STRATEGY_NAMES = get_args(StrategyName)
# Trials at the end of a demo search that may probe the checkpoints no merge dominates yet
# (SearchOptions.dominance_probes); the strategy gets those no probe needs.
DEMO_DOMINANCE_PROBES = 8
# The demo pools are a base and its specialists. linear: the paper's weighted average of the whole
# pool (weights on the simplex). task-arithmetic: base + sum_i w_i (specialist_i - base), each w_i
# in [0, --max-weight]: a specialist can keep all of its fine-tuning while some of the others' is added.
# "base" is the base checkpoint's name in both demo pools (recycle.demo.finetune.BASE).
DEMO_MERGES = {"linear": MergeSpec(), "task-arithmetic": MergeSpec(normalize=False, base="base")}


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


def command_run(args) -> int:
    spec = load_search_file(Path(args.search))
    common.show_warnings()
    out = Path(args.out) if args.out else Settings().data_dir / "runs" / time.strftime("search-%Y%m%d-%H%M%S")
    return run_and_report({spec.strategy: spec}, out, args.workers, args.device or Settings().resolved_device(), common.console)


def command_verdict(args) -> int:
    """Judge the finished searches of a `recycle run` or `recycle demo` directory again."""
    common.show_warnings()
    return judge_run_dir(Path(args.run_dir), args.device or Settings().resolved_device(), common.console)


def check_option(name: str, value, flag: str) -> None:
    """`value` against the bounds SearchOptions declares for `name`, before a pool build."""
    from pydantic import TypeAdapter, ValidationError

    field = GROUPS[GROUP_OF[name]].model_fields[name]  # options are grouped (problem, algorithm, runtime)
    try:
        TypeAdapter(Annotated[field.annotation, field]).validate_python(value)
    except ValidationError as error:
        raise UsageError(f"{flag} {value}: {error.errors()[0]['msg'].lower()}") from None


def demo_strategies(args) -> list[str]:
    """The demo's strategies; its options checked before anything is built."""
    strategies = [s.strip() for s in args.strategy.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGY_NAMES]
    if unknown or not strategies:
        raise UsageError(f"unknown strategy {', '.join(unknown) or '(none)'}; choose from {', '.join(STRATEGY_NAMES)}")
    if args.max_weight != 1.0 and args.merge == "linear":
        raise UsageError("--max-weight bounds task-arithmetic weights (--merge task-arithmetic); linear weights are on the simplex")
    for name, flag in [("max_weight", "--max-weight"), ("budget", "--budget"), ("concurrency", "--workers"), ("seed", "--seed")]:
        value = getattr(args, name if name != "concurrency" else "workers")
        if value is not None:
            check_option(name, value, flag)
    return strategies


def command_demo(args) -> int:
    settings = Settings()
    strategies = demo_strategies(args)
    common.show_warnings()
    common.console.print(f"[bold]recycle demo[/]: building (or reusing) the {args.pool} checkpoint pool in {settings.pool_cache_dir}")
    with training_bars():
        demo = build_demo(args.pool, settings.pool_cache_dir, args.pool_seed, common.console.print)
    specs = {strategy: demo_spec(demo, args.pool, strategy, args) for strategy in strategies}
    out = Path(args.out) if args.out else settings.data_dir / "runs" / time.strftime(f"demo-{args.pool}-%Y%m%d-%H%M%S")
    return run_and_report(specs, out, args.workers, args.device or settings.resolved_device(), common.console)


def demo_spec(demo, pool: str, strategy: str, args) -> SearchSpec:
    """The search `recycle demo` runs on a demo pool (bench/science.py measures exactly this)."""
    kind = DEMO_POOLS[pool]
    return SearchSpec(pool=demo.pool, tasks=demo.tasks, left_out_tasks=demo.left_out_tasks, strategy=strategy,
                      budget=args.budget or kind.budget, concurrency=args.workers, seed=args.seed,
                      shrunk_singles=kind.shrunk_singles, merge=DEMO_MERGES[args.merge], max_weight=args.max_weight,
                      report_every_trial=False, dominance_probes=DEMO_DOMINANCE_PROBES)


@contextmanager
def training_bars():
    """A progress bar with ETA for each fine-tuning run of a pool build (none when the pool is cached)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from recycle.demo.finetune import step_watcher

    with Progress(TextColumn("[bold]training {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[loss]}"), console=common.console) as progress:
        bars: dict[str, int] = {}

        def on_step(label: str, step: int, steps: int, loss: float) -> None:
            if label not in bars:
                bars[label] = progress.add_task(label, total=steps, loss="")
            progress.update(bars[label], completed=step, loss=f"loss {loss:.3f}")

        token = step_watcher.set(on_step)
        try:
            yield
        finally:
            step_watcher.reset(token)
