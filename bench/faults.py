"""Faults survived and bad input refused, on real processes.

    python bench/faults.py [--kills 10] [--budget 40] [--max-examples 100] [--cache .cache/bench-faults]

Prints one JSON line per figure, no assertions (tests/faults asserts the same scenarios,
from the same code: tests/faults/scenarios.py):

- kills_survived: workers SIGKILLed inside a trial during one search, and how many of
  those trials ran again and were recorded ok (target: all of them);
- trials_lost: trials of that search's budget without an ok result (target 0);
- duplicates_counted: results counted more than once on the proposer's
  recycle_trials_total (target 0), with how many executions the kills caused;
- schemathesis_cases: test cases schemathesis generated against the live API, every
  check on (target >= 1000), with its failures;
- server_errors: 5xx answers to those cases, by the API's own metrics (target 0).

Runs its own redis-server (AOF on) on a free port and the demo pool at test scale
(built once into --cache).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recycle.demo.tiny_pool import build_demo_pool  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.faults.scenarios import FaultStack, schemathesis_run, seed_api, server_errors, worker_kills  # noqa: E402
from tests.stack.processes import RedisServer, http, wait_for  # noqa: E402


def emit(figure: str, value, unit: str, **context) -> None:
    print(json.dumps({"bench": "faults", "figure": figure, "value": value, "unit": unit, **context}), flush=True)


def roots_of(demo, *extra) -> list[str]:
    return sorted({str(Path(c.path).parent.parent) for c in demo.pool.checkpoints}
                  | {str(Path(t.path).parent.parent) for t in demo.tasks} | {str(p) for p in extra})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--whole-kills", type=int, default=3, help="of which kill the whole worker, not only its pool process")
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--max-examples", type=int, default=100, help="schemathesis cases per operation and phase")
    parser.add_argument("--cache", default=str(ROOT / ".cache" / "bench-faults"))
    args = parser.parse_args()

    demo = build_demo_pool(Path(args.cache) / "pool", scale="test", seed=0, log=lambda *a, **k: None)
    with tempfile.TemporaryDirectory(prefix="recycle-bench-faults-") as tmp:
        tmp = Path(tmp)
        server = RedisServer(tmp / "redis", free_port()).start()
        try:
            # Workers killed mid-trial (visibility timeout lowered: see recycle/serve/celery_app.py).
            stack = FaultStack(tmp / "kills", server.url(0), roots_of(demo),
                               env={"RECYCLE_BROKER_VISIBILITY_TIMEOUT_S": "8"})
            (tmp / "kills").mkdir()
            try:
                stack.up(workers=2)
                started = time.perf_counter()
                outcome = worker_kills(stack, stack.register_pool(demo.pool), demo.tasks, kills=args.kills,
                                       whole_kills=args.whole_kills, budget=args.budget)
                seconds = round(time.perf_counter() - started, 1)
            finally:
                stack.stop_all()
            kills = outcome["kills"]
            emit("kills_survived", f"{len(outcome['survived'])}/{len(kills)}", "kills",
                 whole_worker_kills=sum(k.whole for k in kills), pool_process_kills=sum(not k.whole for k in kills),
                 search_seconds=seconds)
            emit("trials_lost", outcome["lost"], "trials", budget=outcome["budget"])
            emit("duplicates_counted", int(outcome["duplicates_counted"]), "trials", counted=outcome["counted"],
                 executions=outcome["executions"])

            # The live API under schemathesis, on a separate database of the same server.
            api = FaultStack(tmp / "api", server.url(1), roots_of(demo))
            (tmp / "api").mkdir()
            try:
                api.base = api.start_api()
                wait_for(lambda: http("GET", api.base + "/healthz")[0] == 200, 90, "the API", api)
                seed = seed_api(api, demo.pool, demo.tasks)
                started = time.perf_counter()
                report = schemathesis_run(api.base, seed, tmp / "api" / "fuzz", max_examples=args.max_examples)
                seconds = round(time.perf_counter() - started, 1)
                errors = server_errors(api.metrics("api"))
            finally:
                api.stop_all()
            emit("schemathesis_cases", report["test_cases"]["generated"], "cases", seconds=seconds,
                 failures=[f["code"] + " " + f["title"] for f in report["failures"]], exit_code=report["returncode"])
            emit("server_errors", int(errors), "responses")
        finally:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
