"""Faults survived with the DEFAULT timeouts, and bad input refused, on real processes.

    python bench/faults.py [--quick] [--kills 5] [--budget 40] [--outage-s 600]
                           [--max-examples 100] [--cache .cache/bench-faults] [--out docs/results/faults.md]

One stack (a redis-server of its own with AOF, the API, the proposer, two Celery workers
at --concurrency 1), no timeout lowered: lease 30 s, grace 50 s, broker visibility 2 h.
Prints one JSON line per figure, no assertions (tests/faults asserts the same scenarios
with a short lease, from the same code):

- whole-worker kills: a worker SIGKILLed (main process and pool) inside a trial, --kills
  times in one search, started again each time: trials_lost, failed, duplicates_counted,
  median_recovery_s (kill to the trial running again, target <= 60 s) and
  executions_per_recorded (results published / trials recorded, target <= 1.1);
- sigterm: `docker compose stop`-style SIGTERM to a worker inside a trial: the trial's
  runs (target 1), the shutdown's seconds against the grace;
- redis_outage: Redis SIGKILLed while the workers finish trials, down --outage-s
  seconds, started again on its AOF: trials_lost (target 0), results spooled;
- http_5xx: the API's own count of 5xx answers over the whole run, 503s apart (the
  designed answer while Redis is down); with --max-examples > 0, after a schemathesis run.

--quick (CI, under ~3 minutes once the pool is cached): 2 kills, budget 16, a 20 s outage,
no schemathesis. Figures are written to --out as a Markdown table too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recycle.demo.tiny_pool import build_demo_pool  # noqa: E402
from recycle.settings import Settings  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.faults.liveness_scenarios import redis_outage, sigterm_mid_trial  # noqa: E402
from tests.faults.scenarios import FaultStack, schemathesis_run, seed_api, worker_kills  # noqa: E402
from tests.stack.processes import RedisServer  # noqa: E402

FIGURES: list[dict] = []


def emit(figure: str, value, unit: str, **context) -> None:
    line = {"bench": "faults", "figure": figure, "value": value, "unit": unit, **context}
    FIGURES.append(line)
    print(json.dumps(line), flush=True)


def roots_of(demo, *extra) -> list[str]:
    return sorted({str(Path(c.path).parent.parent) for c in demo.pool.checkpoints}
                  | {str(Path(t.path).parent.parent) for t in demo.tasks} | {str(p) for p in extra})


def http_answers(stack: FaultStack) -> tuple[int, int]:
    """(5xx other than 503, 503) answers the API counted."""
    samples = stack.metrics("api")
    errors = {k: v for k, v in samples.items() if k.startswith("recycle_http_requests_total{") and 'status="5' in k}
    unavailable = sum(v for k, v in errors.items() if 'status="503"' in k)
    return int(sum(errors.values()) - unavailable), int(unavailable)


def kills_figures(outcome: dict, seconds: float) -> None:
    delays = [d for d in outcome["recovery_s"] if d is not None]
    recorded = len(outcome["trials"])
    emit("kills", len(outcome["kills"]), "whole-worker SIGKILLs", budget=outcome["budget"], search_seconds=seconds,
         survived=len(outcome["survived"]))
    emit("trials_lost", outcome["lost"], "trials", scenario="kills", failed=outcome["view"]["failed"])
    emit("duplicates_counted", int(outcome["duplicates_counted"]), "trials", scenario="kills", counted=outcome["counted"])
    emit("median_recovery_s", statistics.median(delays) if delays else None, "s", each=outcome["recovery_s"],
         target=60)
    emit("executions_per_recorded", round(outcome["executions"] / recorded, 3) if recorded else None, "ratio",
         executions=outcome["executions"], recorded=recorded, target=1.1)


def write_markdown(path: Path, args, seconds: float) -> None:
    rows = "\n".join(f"| {f['figure']} | {json.dumps(f['value'])} | {f['unit']} | "
                     + ", ".join(f"{k}={json.dumps(v)}" for k, v in f.items() if k not in ("bench", "figure", "value", "unit"))
                     + " |" for f in FIGURES)
    command = "python bench/faults.py" + (" --quick" if args.quick else "") + \
        f" --kills {args.kills} --budget {args.budget} --outage-s {args.outage_s:g} --max-examples {args.max_examples}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""# Faults with the default timeouts (bench/faults.py)

Command: `{command}` ({seconds:.0f} s)
Machine: {platform.node()}, {platform.machine()}, {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at the end),
Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M %Z')}
Defaults: lease {Settings().lease_ttl_s:g} s, max {Settings().max_reproposals} re-proposals, SIGTERM grace
{Settings().worker_shutdown_grace_s:g} s, broker visibility {Settings().broker_visibility_timeout_s:g} s (a backstop).

| figure | value | unit | context |
|---|---|---|---|
{rows}
""")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size: 2 kills, budget 16, a 20 s outage, no schemathesis")
    parser.add_argument("--kills", type=int, default=5, help="whole-worker SIGKILLs mid-trial in one search")
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--outage-s", type=float, default=600, help="how long Redis stays down")
    parser.add_argument("--max-examples", type=int, default=100, help="schemathesis cases per operation and phase (0: none)")
    parser.add_argument("--cache", default=str(ROOT / ".cache" / "bench-faults"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "faults.md"))
    args = parser.parse_args()
    if args.quick:
        args.kills, args.budget, args.outage_s, args.max_examples = 2, 16, 20, 0

    begun = time.perf_counter()
    demo = build_demo_pool(Path(args.cache) / "pool", scale="test", seed=0, log=lambda *a, **k: None)
    pool_seconds = round(time.perf_counter() - begun, 1)  # ~0 once cached; a build takes minutes
    with tempfile.TemporaryDirectory(prefix="recycle-bench-faults-") as tmp:
        tmp = Path(tmp)
        server = RedisServer(tmp / "redis", free_port()).start()
        (tmp / "stack").mkdir()
        stack = FaultStack(tmp / "stack", server.url(0), roots_of(demo))
        try:
            stack.up(workers=2)
            pool_id = stack.register_pool(demo.pool)

            started = time.perf_counter()
            outcome = worker_kills(stack, pool_id, demo.tasks, kills=args.kills, whole_kills=args.kills, budget=args.budget)
            kills_figures(outcome, round(time.perf_counter() - started, 1))

            started = time.perf_counter()
            stopped = sigterm_mid_trial(stack, pool_id, demo.tasks)
            emit("sigterm_trial_runs", len(stopped["starts"]), "runs", status=stopped["status"],
                 published=stopped["published"], handed_back=stopped["handed_back"], exit_code=stopped["exit_code"],
                 scenario_seconds=round(time.perf_counter() - started, 1))
            emit("sigterm_shutdown_s", stopped["shutdown_s"], "s", grace_s=Settings().worker_shutdown_grace_s)

            outage = redis_outage(stack, server, pool_id, demo.tasks, outage_s=args.outage_s)
            emit("trials_lost", outage["lost"], "trials", scenario="redis_outage", outage_s=outage["outage_s"],
                 in_flight_at_kill=len(outage["in_flight_at_kill"]), spooled=len(outage["spooled"]),
                 reruns_of_those=sum(outage["reruns"].values()), completed_after_s=outage["completed_after_s"],
                 health_during=outage["health_during"])
            emit("duplicates_counted", int(outage["counted"] - outage["recorded"]), "trials", scenario="redis_outage",
                 executions=outage["executions"], recorded=outage["recorded"])

            if args.max_examples > 0:
                seed = seed_api(stack, demo.pool, demo.tasks)
                report = schemathesis_run(stack.base, seed, tmp / "fuzz", max_examples=args.max_examples)
                emit("schemathesis_cases", report["test_cases"]["generated"], "cases",
                     failures=[f["code"] + " " + f["title"] for f in report["failures"]], exit_code=report["returncode"])
            errors, unavailable = http_answers(stack)
            emit("http_5xx", errors, "responses", http_503_while_redis_down=unavailable)
        finally:
            stack.stop_all()
            server.kill()
    seconds = time.perf_counter() - begun
    emit("bench_seconds", round(seconds, 1), "s", of_which_pool_build=pool_seconds)
    write_markdown(Path(args.out), args, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
