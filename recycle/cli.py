"""The `recycle` command: argparse and dispatch only.

Each command names the module that runs it (recycle/commands/); that module is imported
only when the command runs, so `recycle --help` imports no torch, transformers or flask.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

from recycle.demo.pools import DEFAULT_POOL, DEMO_POOLS

DEMO_MERGE_KINDS = ("linear", "task-arithmetic")

# Errors that mean the request cannot be done (bad input, missing files): printed without a
# traceback, exit 2. Named, not imported: only a module that is loaded can have raised one.
USER_ERRORS = {
    "recycle.errors:UsageError", "builtins:FileExistsError", "pydantic_core._pydantic_core:ValidationError",
    "merger.errors:PoolError", "merger.errors:WeightsError", "evaluator.data:TaskDataError",
    "recycle.demo.smollm2_pool:BaseModelMissing", "recycle.local.heldout:StaleRunError",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recycle", description="Search linear merges of a checkpoint pool.")
    commands = parser.add_subparsers(dest="command", required=True)

    merge = commands.add_parser("merge", help="merge checkpoints with given weights, or run a mergekit config, into an HF directory")
    merge.add_argument("checkpoints", nargs="*", help="HF checkpoint directories or .safetensors files")
    merge.add_argument("--weights", nargs="+", type=float, help="one weight per checkpoint")
    merge.add_argument("--config", help="a mergekit YAML (linear, task_arithmetic, ties, dare_linear, dare_ties) instead of checkpoints and weights")
    merge.add_argument("--seed", type=int, help="with --config: seed of dare's random drops")
    merge.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    merge.add_argument("--dtype", help="output dtype: float32, bfloat16, float16 (default: the pool's)")
    merge.add_argument("--no-normalize", action="store_true", help="use weights as given instead of normalizing to sum 1")
    merge.add_argument("--base", type=int, help="index of the base checkpoint for task arithmetic (implies --no-normalize)")
    merge.set_defaults(handler="recycle.commands.merge:command_merge")

    run = commands.add_parser("run", help="run a search described by a YAML file, in this process")
    run.add_argument("search", help="search YAML: pool, tasks, strategy, budget, concurrency, seed, merge")
    run.add_argument("--out", help="run directory (default: .cache/runs/search-<time>)")
    run.add_argument("--workers", type=int, help="evaluation threads (default: min(concurrency, cores))")
    run.add_argument("--device", help="cpu, cuda, cuda:N (default: settings)")
    run.set_defaults(handler="recycle.commands.runs:command_run")

    demo = commands.add_parser("demo", help="build a demo pool (once) and run searches on it")
    demo.add_argument("--pool", default=DEFAULT_POOL, choices=list(DEMO_POOLS),
                      help="; ".join(f"{name}: {kind.help}" for name, kind in DEMO_POOLS.items()))
    demo.add_argument("--strategy", default="tpe,cmaes", help="one search per strategy, comma separated (tpe, cmaes, random)")
    demo.add_argument("--budget", type=int, help="trials per search (default: "
                      + ", ".join(f"{kind.budget} {name}" for name, kind in DEMO_POOLS.items()) + ")")
    demo.add_argument("--merge", default="linear", choices=DEMO_MERGE_KINDS,
                      help="linear: weights on the simplex over the whole pool (the paper's); task-arithmetic:"
                      " the base plus weighted task vectors of the specialists, each weight in [0, --max-weight]")
    demo.add_argument("--max-weight", type=float, default=1.0,
                      help="task arithmetic: upper bound of each weight (above 1 extrapolates a task vector; default 1)")
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--seed", type=int, default=0, help="the searches' seed")
    demo.add_argument("--pool-seed", type=int, default=0, help="the pool's seed: its training runs and its search/held-out split")
    demo.add_argument("--out")
    demo.add_argument("--device")
    demo.set_defaults(handler="recycle.commands.runs:command_demo")

    verdict = commands.add_parser("verdict", help="judge the searches of a run or demo directory again, on the held-out split")
    verdict.add_argument("run_dir", help="a directory `recycle run` or `recycle demo` wrote")
    verdict.add_argument("--device", help="cpu, cuda, cuda:N (default: settings)")
    verdict.set_defaults(handler="recycle.commands.runs:command_verdict")

    api = commands.add_parser("api", help="serve the HTTP API (waitress)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--threads", type=int, default=8)
    api.set_defaults(handler="recycle.commands.services:command_api")

    proposer = commands.add_parser("proposer", help="run the proposer service for every active search")
    proposer.add_argument("--metrics-port", type=int, default=9101, help="Prometheus port (0: none)")
    proposer.set_defaults(handler="recycle.commands.services:command_proposer")

    worker = commands.add_parser("worker", help="run a Celery worker that merges and evaluates trials")
    worker.add_argument("--concurrency", type=int, default=1, help="worker processes (each keeps its own resident model)")
    worker.add_argument("--metrics-port", type=int, default=9102, help="Prometheus port (0: none)")
    worker.set_defaults(handler="recycle.commands.services:command_worker")

    status = commands.add_parser("status", help="list the searches in Redis or a run directory, or show one search's front")
    status.add_argument("search", nargs="?",
                        help="a search id (Redis), or a run directory `recycle run`/`recycle demo` wrote: one search's progress and Pareto front")
    status.add_argument("--json", action="store_true", help="print what the API's /v1/searches[/<id>] returns")
    status.set_defaults(handler="recycle.commands.status:command_status")

    export = commands.add_parser("export", help="export one trial of a search as an HF directory + mergekit YAML")
    export.add_argument("search", help="search id (Redis), or a run directory `recycle run`/`recycle demo` wrote")
    export.add_argument("trial", help="trial id, trial number, or 'best' (best macro-average on the search split)")
    export.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    export.add_argument("--dtype", help="output dtype: float32, bfloat16, float16 (default: the pool's)")
    export.set_defaults(handler="recycle.commands.export:command_export")
    return parser


def is_user_error(error: BaseException) -> bool:
    return any(f"{cls.__module__}:{cls.__qualname__}" in USER_ERRORS for cls in type(error).__mro__)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module, function = args.handler.split(":")
    try:
        return getattr(import_module(module), function)(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (`recycle status --json | head`): say nothing more, and keep Python's
        # final flush of stdout from failing too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as error:
        if not is_user_error(error):
            raise
        from rich.markup import escape

        from recycle.commands.common import console

        # Escaped: a message's own brackets ("recycle[lm-eval]", a list) are not rich markup.
        if type(error).__name__ == "ValidationError":
            console.print(f"[red]error:[/] invalid input:\n{escape(str(error))}")
        else:
            console.print(f"[red]error:[/] {escape(str(error))}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
