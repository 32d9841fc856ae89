"""Fault scenarios on real processes: shared by the tests in tests/faults (which assert on
what they return) and bench/faults.py (which prints it).

Every scenario drives a `FaultStack`: the processes compose runs (`recycle worker`,
`recycle proposer`, `recycle api`) as subprocesses of tests/stack/processes.py, around a
Redis the caller names (a redis-server of its own, never the machine's). Faults are real:
SIGKILL and SIGSTOP of processes found by pid, a Redis killed and started again on its
AOF, checkpoint files corrupted on disk, messages sent straight to the broker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from contracts import CheckpointRef, PoolSpec, SearchStatus, TrialResult, TrialStatus, keys
from proposer.redis_store import RedisStore
from tests.conftest import free_port
from tests.stack.processes import Stack, http, scrape, total, wait_for

# Distinctive, so a log that leaks it is found by a plain search.
TOKEN = "fault-token-6d1e0c7b94a2"
STARTED = re.compile(r"trial (\S+) started in process (\d+)( \(redelivered\))?")
PUBLISHED = re.compile(r"trial (\S+) (ok|failed) in process (\d+), result published")


@dataclass
class Kill:
    worker: str
    pid: int  # the process that was running the trial
    trial_id: str
    whole: bool  # the whole worker (main process and pool) or only the pool process
    at: float
    wall: float = 0.0  # unix time of the kill


class FaultStack(Stack):
    """A running recycle deployment on one Redis, with the handles faults need."""

    def __init__(self, log_dir: Path, redis_url: str, roots: list[str], env: dict | None = None):
        super().__init__(
            {
                "RECYCLE_REDIS_URL": redis_url,
                "RECYCLE_ALLOWED_ROOTS": json.dumps(sorted(roots)),
                "RECYCLE_API_TOKEN": TOKEN,
                "RECYCLE_DATA_DIR": str(log_dir / "data"),
                "RECYCLE_DEVICE": "cpu",
                "OMP_NUM_THREADS": "1",
                **(env or {}),
            },
            log_dir,
        )
        self.redis = redis.Redis.from_url(redis_url)
        self.store = RedisStore(self.redis)
        self.ports: dict[str, int] = {}
        self.starts: dict[str, int] = {}

    # -- processes ------------------------------------------------------------------
    def port(self, name: str) -> int:
        return self.ports.setdefault(name, free_port())

    def start_worker(self, name: str, env: dict | None = None) -> None:
        self.start(name, "worker", "--concurrency", "1", "--metrics-port", str(self.port(name)), env=env)

    def start_proposer(self) -> None:
        self.start("proposer", "proposer", "--metrics-port", str(self.port("proposer")))

    def start_api(self, name: str = "api", env: dict | None = None) -> str:
        self.start(name, "api", "--port", str(self.port(name)), env=env)
        return f"http://127.0.0.1:{self.port(name)}"

    def up(self, workers: int = 2, proposer: bool = True, timeout: float = 90,
           worker_env: dict[str, dict] | None = None) -> "FaultStack":
        """`worker_env`: variables for some workers only, by name (worker-1, worker-2, ...)."""
        self.workers = [f"worker-{i + 1}" for i in range(workers)]
        for worker in self.workers:
            self.start_worker(worker, env=(worker_env or {}).get(worker))
        if proposer:
            self.start_proposer()
        self.base = self.start_api()
        wait_for(lambda: http("GET", self.base + "/healthz")[0] == 200, timeout, "the API", self)
        for worker in self.workers:
            self.wait_worker_ready(worker, timeout)
        return self

    def start(self, name: str, *args: str, env: dict | None = None):
        self.starts[name] = self.starts.get(name, 0) + 1
        return super().start(name, *args, env=env)

    def wait_worker_ready(self, name: str, timeout: float = 90) -> None:
        """Until every start of the worker has said 'ready.' (its log holds them all)."""
        wait_for(lambda: self.log(name, tail=None).count(" ready.") >= self.starts[name] and self.children(name),
                 timeout, f"{name} to be ready", self)

    def restart(self, name: str, env: dict | None = None) -> None:
        """Start a process that was killed, as it was started (a worker's log says 'ready.' again)."""
        if name == "proposer":
            self.start_proposer()
        else:
            self.start_worker(name, env=env)

    def workers_view(self) -> dict:
        status, body = http("GET", self.base + "/v1/workers")
        assert status == 200, body
        return body

    # -- the API --------------------------------------------------------------------
    def register_pool(self, pool) -> str:
        status, body = http("POST", self.base + "/v1/pools", pool.model_dump(mode="json"), TOKEN)
        assert status == 201, body
        return body["id"]

    def start_search(self, pool_id: str, tasks, **overrides) -> str:
        body = {"pool_id": pool_id, "tasks": [t.model_dump(mode="json") for t in tasks],
                "strategy": "tpe", "budget": 12, "concurrency": 2, "seed": 3, **overrides}
        status, search = http("POST", self.base + "/v1/searches", body, TOKEN)
        assert status == 201, search
        return search["id"]

    def view(self, search_id: str) -> dict:
        status, view = http("GET", f"{self.base}/v1/searches/{search_id}")
        assert status == 200, view
        return view

    def trials(self, search_id: str) -> list[dict]:
        status, page = http("GET", f"{self.base}/v1/searches/{search_id}/trials?limit=10000")
        assert status == 200, page
        return page["trials"]

    def wait_completed(self, search_id: str, timeout: float = 240) -> dict:
        return wait_for(lambda: (lambda v: v if v["status"] == "completed" else None)(self.view(search_id)),
                        timeout, f"search {search_id} to complete", self)

    def metrics(self, name: str) -> dict[str, float]:
        return scrape(f"http://127.0.0.1:{self.port(name)}/metrics")

    # -- what happened ----------------------------------------------------------------
    def recorded(self, search_id: str) -> int:
        return self.redis.hlen(keys.results(search_id))

    def published(self) -> list[TrialResult]:
        """Every result workers put on the results stream, duplicates included."""
        return [TrialResult.model_validate_json(fields[b"result"])
                for _, fields in self.redis.xrange(keys.results_stream())]

    def events(self, name: str) -> list[tuple[str, str, int, bool]]:
        """(event, trial id, pid, redelivered) from a worker's log, in order: started / ok / failed."""
        found = []
        for line in self.log(name, tail=None).splitlines():
            if match := STARTED.search(line):
                found.append(("started", match[1], int(match[2]), bool(match[3])))
            elif match := PUBLISHED.search(line):
                found.append((match[2], match[1], int(match[3]), False))
        return found

    def running_trial(self, name: str, pid: int) -> str | None:
        """The trial process `pid` of worker `name` started and has not published, by its log."""
        mine = [e for e in self.events(name) if e[2] == pid]
        return mine[-1][1] if mine and mine[-1][0] == "started" else None

    def freeze_mid_trial(self, names: list[str], search_id: str, whole: bool = False,
                         timeout: float = 120, killed: frozenset[int] = frozenset(),
                         spare: frozenset[str] = frozenset()) -> tuple[str, int, str]:
        """SIGSTOP a worker (its pool process, or the whole worker) caught inside a trial of
        `search_id`: its log says the trial started and it has not published, and nothing
        on the results stream answers that trial. Returns (worker, pool pid, trial id).
        `killed`: pids already SIGKILLed, never picked again (one caught in uninterruptible
        I/O dies late, still listed and its trial still "started": a fresh-clone run froze
        such a one again and found it gone when it came to kill it). `spare`: trial ids not to
        catch (a slow trial rerun after a kill would otherwise be caught again and again)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            for name in names:
                pids = self.children(name)
                if len(pids) != 1:
                    continue
                pid = pids[0]
                if pid in killed:
                    continue
                trial = self.running_trial(name, pid)
                if not trial or not trial.startswith(search_id) or trial in spare:
                    continue
                target = self.processes[name].pid
                os.killpg(target, signal.SIGSTOP) if whole else os.kill(pid, signal.SIGSTOP)
                # A result written just before the stop may still sit in a socket buffer, unread
                # by Redis: give it time to land before asking whether the trial answered.
                time.sleep(0.3)
                if self.running_trial(name, pid) == trial and trial not in {r.trial_id for r in self.published()}:
                    return name, pid, trial
                os.killpg(target, signal.SIGCONT) if whole else os.kill(pid, signal.SIGCONT)
            time.sleep(0.01)
        raise AssertionError(f"no worker of {names} was caught inside a trial of {search_id} in {timeout} s")

    def logs_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))


def pool_copy(pool, into: Path, name: str):
    """A copy of a pool's checkpoint folders under `into` (the PoolSpec pointing at it)."""
    into.mkdir(parents=True, exist_ok=True)
    checkpoints = []
    for ref in pool.checkpoints:
        target = into / ref.name
        shutil.copytree(ref.path, target)
        checkpoints.append(CheckpointRef(name=ref.name, path=str(target)))
    return PoolSpec(name=name, checkpoints=tuple(checkpoints))


def poison_with_nan(checkpoint_dir: Path) -> None:
    """Every floating tensor of a checkpoint set to NaN, in place (the file stays valid)."""
    from safetensors.torch import load_file, save_file

    path = checkpoint_dir / "model.safetensors"
    tensors = load_file(path)
    save_file({k: (v.fill_(float("nan")) if v.is_floating_point() else v) for k, v in tensors.items()},
              path, metadata={"format": "pt"})


def truncate(path: Path, keep: float = 0.5) -> None:
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(int(size * keep))


# -- 1: workers killed mid-trial ---------------------------------------------------------


def worker_kills(stack: FaultStack, pool_id: str, tasks, kills: int = 10, whole_kills: int = 3,
                 budget: int = 40) -> dict:
    """SIGKILL a worker caught inside a trial, `kills` times during one search.

    Most kills hit the pool process that runs the trial (what the OOM killer picks): the
    worker's main process sees it die and requeues the trial at once
    (task_reject_on_worker_lost), and the next process takes over the dead one's lease.
    The last `whole_kills` kill the whole worker, main process included, and start it
    again: no one is left to requeue, so the trial comes back when its lease lapses
    (the proposer sends it again), handed out to whichever worker is free. Kills are
    spread over the first half of the search (the i-th waits until i/kills of half the
    budget has results), so a trial to kill is always at hand: the search must not run
    out of budget before the last kill.
    """
    search_id = stack.start_search(pool_id, tasks, budget=budget, concurrency=2, trial_timeout_s=600)
    done: list[Kill] = []
    started = time.monotonic()
    for i in range(kills):
        whole = i >= kills - whole_kills
        threshold = (i * budget) // (2 * kills)
        wait_for(lambda: stack.recorded(search_id) >= threshold, 120, f"{threshold} results", stack, interval=0.02)
        if stack.recorded(search_id) >= budget:
            raise AssertionError(f"the search ran out of budget after {len(done)} kills")
        # Only workers whose pool process is up: a restarted one may still be importing.
        name, pid, trial = stack.freeze_mid_trial(stack.workers, search_id, whole=whole,
                                                  killed=frozenset(k.pid for k in done),
                                                  spare=frozenset(k.trial_id for k in done))
        wall = time.time()
        if whole:
            stack.kill(name)  # SIGKILL to the process group: main process and pool
            stack.restart(name)
        else:
            os.kill(pid, signal.SIGKILL)
        done.append(Kill(name, pid, trial, whole, time.monotonic() - started, wall))
    view = stack.wait_completed(search_id)
    for worker in stack.workers:
        stack.wait_worker_ready(worker)
    trials = stack.trials(search_id)
    by_id = {t["proposal"]["trial_id"]: t for t in trials}
    reruns = {k.trial_id: [e for w in stack.workers for e in stack.events(w)
                           if e[0] == "started" and e[1] == k.trial_id and e[2] != k.pid]
              for k in done}
    survived = [k for k in done
                if by_id.get(k.trial_id, {}).get("status") == "ok"
                and int(by_id[k.trial_id]["worker"].rpartition(":")[2]) != k.pid
                and reruns[k.trial_id]]
    counted = total(stack.metrics("proposer"), "recycle_trials_total", search=search_id)
    return {
        "search_id": search_id,
        "budget": budget,
        "view": view,
        "trials": trials,
        "kills": done,
        "survived": survived,
        "reruns": reruns,
        "lost": budget - sum(1 for t in by_id.values() if t["status"] == "ok"),
        "counted": counted,
        "duplicates_counted": counted - len(by_id),
        "executions": len([r for r in stack.published() if r.search_id == search_id]),
        "recovery_s": [rerun_delay(stack, k) for k in done],
        "worker_gauges": {w: {k: v for k, v in stack.metrics(w).items() if k in ("recycle_worker_processes", "recycle_worker_busy")}
                          for w in stack.workers},
    }


def started_times(stack: FaultStack, trial_id: str) -> list[tuple[float, int]]:
    """(unix time, pid) of every start of a trial, from the workers' log lines (their
    timestamps are the logging default, local time with milliseconds)."""
    found = []
    for worker in stack.workers:
        for line in stack.log(worker, tail=None).splitlines():
            match = STARTED.search(line)
            if match and match[1] == trial_id:
                stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000
                found.append((stamp, int(match[2])))
    return sorted(found)


def rerun_delay(stack: FaultStack, kill: Kill) -> float | None:
    """Seconds from a kill to its trial starting again in another process (None: never)."""
    return next((round(at - kill.wall, 2) for at, pid in started_times(stack, kill.trial_id) if pid != kill.pid
                 and at >= kill.wall - 0.01), None)


# -- 2: the proposer killed and restarted ----------------------------------------------


def proposer_restarts(stack: FaultStack, pool_id: str, tasks, restarts: int = 3, budget: int = 24,
                      strategy: str = "cmaes") -> dict:
    """SIGKILL the proposer `restarts` times during one search, each time once a share of
    the budget has results, and start it again at once."""
    search_id = stack.start_search(pool_id, tasks, budget=budget, concurrency=2, strategy=strategy, trial_timeout_s=600)
    before = []
    for i in range(restarts):
        threshold = ((i + 1) * budget) // (restarts + 2)
        wait_for(lambda: stack.recorded(search_id) >= threshold, 120, f"{threshold} results", stack, interval=0.02)
        stack.kill("proposer")
        before.append({"proposed": len(stack.store.proposals(search_id)), "recorded": stack.recorded(search_id)})
        stack.restart("proposer")
    view = stack.wait_completed(search_id)
    loaded = [json.loads(m[1].replace("'", '"')) for m in
              re.finditer(rf"search {re.escape(search_id)} loaded: (\{{[^}}]*\}})", stack.log("proposer", tail=None))]
    return {
        "search_id": search_id,
        "budget": budget,
        "view": view,
        "trials": stack.trials(search_id),
        "proposals": stack.store.proposals(search_id),
        "published": [r for r in stack.published() if r.search_id == search_id],
        "before_kills": before,
        "loaded": loaded,
    }


# -- 3: Redis restarted ----------------------------------------------------------------------


def redis_restart(stack: FaultStack, server, pool_id: str, tasks, budget: int = 16, down_s: float = 4.0) -> dict:
    """Kill Redis (SIGKILL) mid-search while a worker is inside a trial that finishes during
    the outage, keep it down `down_s` seconds, start it again on its AOF."""
    search_id = stack.start_search(pool_id, tasks, budget=budget, concurrency=2, trial_timeout_s=600)
    wait_for(lambda: stack.recorded(search_id) >= budget // 3, 120, "a third of the results", stack, interval=0.02)
    name, pid, trial = stack.freeze_mid_trial(stack.workers, search_id)
    server.kill()
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGCONT)  # it finishes the trial and must publish with Redis down
    health_during = http("GET", stack.base + "/healthz")
    time.sleep(max(0.0, down_s - (time.monotonic() - killed_at)))
    server.start()
    view = stack.wait_completed(search_id)
    return {
        "search_id": search_id,
        "budget": budget,
        "view": view,
        "trials": stack.trials(search_id),
        "trial_during_outage": trial,
        "worker": name,
        "health_during_outage": health_during,
        "counted": total(stack.metrics("proposer"), "recycle_trials_total", search=search_id),
    }


# -- 6: the live API under schemathesis ---------------------------------------------------


@dataclass
class FuzzSeed:
    pool_ids: list[str]
    search_ids: list[str]
    trial_ids: list[str] = field(default_factory=list)


def seed_api(stack: FaultStack, pool, tasks) -> FuzzSeed:
    """A registered pool and a search with a few recorded trials (ok and failed), so the
    fuzzer's reads and exports reach real data, not only 404s. Results are recorded the
    way the proposer records them (SearchDriver on the Redis store)."""
    from proposer import SearchDriver

    pool_id = stack.register_pool(pool)
    search_id = stack.start_search(pool_id, tasks, budget=8)
    driver = SearchDriver(search_id, stack.store.get_search(search_id), stack.store)
    trial_ids = []
    for proposal in driver.propose(4):
        if proposal.number == 3:
            result = TrialResult(proposal=proposal, status=TrialStatus.failed, error="timed out: no result within 60 s")
        else:
            scores = {t.name: 2.0 + 0.1 * proposal.number + 0.01 * i for i, t in enumerate(tasks)}
            result = TrialResult(proposal=proposal, status=TrialStatus.ok, scores=scores, report=scores,
                                 merge_seconds=0.01, eval_seconds=0.1, total_seconds=0.11, worker="seed:1")
        driver.record(result)
        trial_ids.append(proposal.trial_id)
    stack.store.set_status(search_id, SearchStatus.paused)  # no proposer here: nothing else happens to it
    return FuzzSeed([pool_id], [search_id], trial_ids)


def schemathesis_config(seed: FuzzSeed) -> str:
    ids = json.dumps  # a JSON array of strings is a TOML array
    return f"""
# The token comes from the environment: never on a command line or in a report.
[auth.openapi.bearer]
bearer = "${{RECYCLE_FUZZ_TOKEN}}"

[dictionaries.pool_ids]
values = {ids(seed.pool_ids)}
[dictionaries.search_ids]
values = {ids(seed.search_ids)}
[dictionaries.trial_ids]
values = {ids(seed.trial_ids)}

# Half the generated ids are real ones, so reads, lifecycle calls and exports reach their logic.
[parameters]
"path.pool_id" = {{ dictionary = "pool_ids", probability = 0.5 }}
"body.pool_id" = {{ dictionary = "pool_ids", probability = 0.5 }}
"path.search_id" = {{ dictionary = "search_ids", probability = 0.5 }}
"body.trial_id" = {{ dictionary = "trial_ids", probability = 0.5 }}

# A pool or a search can be valid JSON for the schema and still name files that do not
# exist, lie outside the allowed roots or do not fit together: that is a 422 with the
# reason, which the schema cannot express. Everything else keeps the default expectation.
[[operations]]
include-path-regex = "^/v1/(pools|searches)$"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "409", "422"]
"""


def schemathesis_run(api_base: str, seed: FuzzSeed, out_dir: Path, max_examples: int = 100,
                     run_seed: int = 0, timeout: float = 300) -> dict:
    """Run schemathesis' CLI against the live API with every check on; return its JSON report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = out_dir / "schemathesis.toml"
    config.write_text(schemathesis_config(seed))
    report = out_dir / "schemathesis-report.json"
    command = [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config), "run",
               f"{api_base}/openapi.json", "--checks", "all", "--max-examples", str(max_examples),
               "--seed", str(run_seed), "--workers", "2", "--no-color", "--report", "json",
               "--report-json-path", str(report), "--generation-database", "none"]
    with (out_dir / "schemathesis.log").open("wb") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                                  env={**os.environ, "RECYCLE_FUZZ_TOKEN": TOKEN}, cwd=out_dir)
    result = json.loads(report.read_text())
    result["returncode"] = finished.returncode
    result["output"] = (out_dir / "schemathesis.log").read_text(errors="replace")
    return result


def server_errors(samples: dict[str, float]) -> float:
    """5xx answers the API counted (its own recycle_http_requests_total)."""
    return sum(v for k, v in samples.items() if k.startswith("recycle_http_requests_total{") and 'status="5' in k)
