"""Liveness scenarios on real processes, shared by bench/faults.py (which prints what they
return) and the fault tests: a worker stopped the way `docker compose stop` stops it, and
Redis down while workers finish their trials. (Workers SIGKILLed: scenarios.worker_kills.)"""

from __future__ import annotations

import os
import signal
import time

from tests.faults.scenarios import FaultStack
from tests.stack.processes import http, total, wait_for


def starts(stack: FaultStack, trial_id: str) -> list[int]:
    """Pids of the processes that started this trial, from the workers' logs."""
    return [e[2] for w in stack.workers for e in stack.events(w) if e[0] == "started" and e[1] == trial_id]


def sigterm_mid_trial(stack: FaultStack, pool_id: str, tasks, budget: int = 6, worker: str | None = None) -> dict:
    """SIGTERM to a worker's main process (tini forwards it to its child only) while its
    pool process is inside a trial (held there by SIGSTOP until the signal is sent); the
    worker is started again once it has exited."""
    search_id = stack.start_search(pool_id, tasks, budget=budget, concurrency=2, trial_timeout_s=600)
    name, pid, trial = stack.freeze_mid_trial([worker] if worker else stack.workers, search_id)
    process = stack.processes.pop(name)
    started = time.monotonic()
    os.kill(process.pid, signal.SIGTERM)
    os.kill(pid, signal.SIGCONT)
    process.wait(timeout=600)
    seconds = time.monotonic() - started
    stack.restart(name)
    view = stack.wait_completed(search_id)
    stack.wait_worker_ready(name)
    result = next(t for t in stack.trials(search_id) if t["proposal"]["trial_id"] == trial)
    return {
        "search_id": search_id, "view": view, "trial": trial, "pid": pid, "exit_code": process.returncode,
        "shutdown_s": round(seconds, 2), "status": result["status"], "ran_in": result["worker"],
        "starts": starts(stack, trial), "published": [r.trial_id for r in stack.published()].count(trial),
        "handed_back": f"trial {trial} not done" in stack.log(name, tail=None),
    }


def redis_outage(stack: FaultStack, server, pool_id: str, tasks, budget: int = 8, outage_s: float = 600) -> dict:
    """Kill Redis (SIGKILL) while the workers are inside trials (each held by SIGSTOP until
    Redis is gone, so each finishes during the outage), keep it down `outage_s` seconds,
    start it again on its AOF; the search must complete with every result recorded once."""
    search_id = stack.start_search(pool_id, tasks, budget=budget, concurrency=len(stack.workers), trial_timeout_s=3600)
    wait_for(lambda: stack.recorded(search_id) >= 1, 120, "a first result", stack, interval=0.02)
    frozen = [stack.freeze_mid_trial(stack.workers, search_id)]
    others = [w for w in stack.workers if w != frozen[0][0]]
    try:
        frozen.append(stack.freeze_mid_trial(others, search_id, timeout=20))
    except AssertionError:
        pass  # the other worker had no trial of this search to be caught in
    server.kill()
    killed = time.monotonic()
    for _, pid, _ in frozen:
        os.kill(pid, signal.SIGCONT)  # each finishes its trial with Redis gone
    health = []
    while time.monotonic() - killed < outage_s:
        health.append(http("GET", stack.base + "/healthz")[0])
        time.sleep(min(5.0, max(0.0, outage_s - (time.monotonic() - killed))))
    server.start()
    back = time.monotonic()
    view = stack.wait_completed(search_id, timeout=600)
    trials = stack.trials(search_id)
    ok = {t["proposal"]["trial_id"] for t in trials if t["status"] == "ok"}
    spooled = [trial for _, _, trial in frozen
               if any(f"redis unavailable while publishing the result of trial {trial}" in stack.log(w, tail=None)
                      for w in stack.workers)]
    return {
        "search_id": search_id, "view": view, "budget": budget, "outage_s": round(back - killed, 1),
        "in_flight_at_kill": [trial for _, _, trial in frozen], "spooled": spooled,
        "lost": budget - len(ok), "lost_in_flight": [t for _, _, t in frozen if t not in ok],
        "reruns": {t: len(starts(stack, t)) - 1 for _, _, t in frozen},
        "completed_after_s": round(time.monotonic() - back, 1),
        "health_during": sorted(set(health)),
        "counted": total(stack.metrics("proposer"), "recycle_trials_total", search=search_id),
        "recorded": len({t["proposal"]["trial_id"] for t in trials}),
        "executions": len([r for r in stack.published() if r.search_id == search_id]),
    }
