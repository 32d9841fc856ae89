"""Orchestration overhead of the distributed runtime (Celery + Redis + proposer).

Starts its own redis-server, N `recycle worker` processes, `recycle proposer` and
`recycle api` (the processes compose runs), runs a search on the test-scale demo
pool (tiny model: evaluation takes a few tens of ms, so orchestration shows), and
prints one JSON line per figure, for 1 and 2 workers:
  overhead_ms   per trial, worker time not spent inside a trial:
                (wall x workers - sum of trial seconds) / trials  (median over repeats)
  trials_per_s  trials / wall time from the first send to the last result
  busy_fraction sum of trial seconds / (wall x workers)
Concurrency is workers + 1, so one trial waits in the queue for each free worker.

    python bench/stack.py [--budget 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import free_port  # noqa: E402
from tests.stack.fixtures import TOKEN, allowed_roots  # noqa: E402
from tests.stack.processes import RedisServer, Stack, http, wait_for  # noqa: E402


def run(demo, workers: int, budget: int, scratch: Path) -> dict:
    redis = RedisServer(scratch / f"redis-{workers}", free_port()).start()
    stack = Stack({"RECYCLE_REDIS_URL": redis.url(), "RECYCLE_ALLOWED_ROOTS": json.dumps(allowed_roots(demo)),
                   "RECYCLE_API_TOKEN": TOKEN, "RECYCLE_DATA_DIR": str(scratch / "data"), "RECYCLE_DEVICE": "cpu",
                   "OMP_NUM_THREADS": "1"}, scratch)
    try:
        for number in range(workers):
            stack.start(f"worker-{number}", "worker", "--concurrency", "1", "--metrics-port", "0")
        stack.start("proposer", "proposer", "--metrics-port", "0")
        port = free_port()
        stack.start("api", "api", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http("GET", base + "/healthz")[0] == 200, 60, "the API", stack)
        pool_id = http("POST", base + "/v1/pools", demo.pool.model_dump(mode="json"), TOKEN)[1]["id"]
        body = {"pool_id": pool_id, "tasks": [t.model_dump(mode="json") for t in demo.tasks], "strategy": "random",
                "budget": budget, "concurrency": workers + 1, "seed": 0}
        # Warm-up: every worker opens the pool and builds its model once; not what we measure.
        warm = http("POST", base + "/v1/searches", {**body, "budget": 2 * workers}, TOKEN)[1]["id"]
        wait_for(lambda: http("GET", f"{base}/v1/searches/{warm}")[1]["status"] == "completed", 300, "warm-up", stack)
        search = http("POST", base + "/v1/searches", body, TOKEN)[1]["id"]
        wait_for(lambda: http("GET", f"{base}/v1/searches/{search}")[1]["status"] == "completed", 600, "search", stack)
        trials = http("GET", f"{base}/v1/searches/{search}/trials")[1]["trials"]
        from proposer.redis_store import RedisStore

        sent = RedisStore.from_url(redis.url()).sent_at(search)
        start = min(sent.values())
        end = max(t["finished_at"] for t in trials)
        wall = end - start
        busy = sum(t["total_seconds"] for t in trials)
        return {"workers": workers, "trials": len(trials), "wall_s": wall, "trial_seconds_median": statistics.median(
            t["total_seconds"] for t in trials), "overhead_ms": 1000 * (wall * workers - busy) / len(trials),
            "trials_per_s": len(trials) / wall, "busy_fraction": busy / (wall * workers)}
    finally:
        stack.stop_all()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--cache", default=".cache/bench-stack")
    args = parser.parse_args()
    from recycle.demo.tiny_pool import build_demo_pool

    demo = build_demo_pool(Path(args.cache), scale="test", log=lambda *a, **k: None)
    with tempfile.TemporaryDirectory(prefix="recycle-bench-stack-") as scratch:
        for workers in (1, 2):
            figures = run(demo, workers, args.budget, Path(scratch))
            print(json.dumps({"bench": "stack", **figures, "targets": {"overhead_ms": 20, "busy_fraction_2_workers": 0.95}}),
                  flush=True)


if __name__ == "__main__":
    main()
