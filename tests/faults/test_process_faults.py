"""Faults of one deployment (two workers, the proposer, the API, a Redis of its own): a
trial that hangs, checkpoints broken on disk, messages that must not run, the proposer
killed and restarted mid-search. Each test runs its own search; metrics are per search."""

from __future__ import annotations

import math
import os
import pickle
import signal
import time

import pytest
from celery import Celery

from contracts import keys
from proposer import SearchDriver
from recycle.serve.celery_app import make_celery
from tests.faults.conftest import assert_no_secret_in_logs, make_stack
from tests.faults.scenarios import TOKEN, pool_copy, poison_with_nan, proposer_restarts, truncate
from tests.stack.processes import http, total, wait_for

HANG_TIMEOUT_S = 10  # above a fresh pool process's first trial (~4 s: it opens the pool) with margin


@pytest.fixture(scope="module")
def stack(demo_pool, redis_server, tmp_path_factory):
    running = make_stack(demo_pool, redis_server, tmp_path_factory)
    try:
        yield running.up(workers=2)
    finally:
        running.stop_all()


@pytest.fixture(scope="module")
def pool_id(stack, demo_pool):
    return stack.register_pool(demo_pool.pool)


def by_trial(trials: list[dict]) -> dict[str, dict]:
    return {t["proposal"]["trial_id"]: t for t in trials}


def starts(stack, trial_id: str) -> int:
    """How many times any worker process started this trial."""
    return sum(1 for w in stack.workers for e in stack.events(w) if e[0] == "started" and e[1] == trial_id)


def test_a_hung_trial_times_out_and_the_search_goes_on(stack, pool_id, demo_pool):
    """A pool process stopped (SIGSTOP) inside a trial: the proposer marks the trial failed
    once it outlives `trial_timeout_s`, the other worker finishes the search, and the late
    answer of the stopped process, once it runs again, changes nothing."""
    budget = 10
    search_id = stack.start_search(pool_id, demo_pool.tasks, budget=budget, concurrency=2, trial_timeout_s=HANG_TIMEOUT_S)
    name, pid, hung = stack.freeze_mid_trial(stack.workers, search_id)
    try:
        view = stack.wait_completed(search_id, timeout=120)
    finally:
        os.kill(pid, signal.SIGCONT)
    trials = by_trial(stack.trials(search_id))
    assert len(trials) == budget and view["done"] == budget - 1 and view["failed"] == 1
    assert trials[hung]["status"] == "failed" and "timed out" in trials[hung]["error"], trials[hung]
    assert all(t["status"] == "ok" for i, t in trials.items() if i != hung)
    proposer = stack.metrics("proposer")
    assert total(proposer, "recycle_trials_total", search=search_id, status="failed") == 1
    assert total(proposer, "recycle_trials_total", search=search_id, status="ok") == budget - 1

    # Let go, the stopped process gets its soft time limit (sent while it was stopped) and
    # publishes a failed result; it is a duplicate of the recorded one and is ignored.
    wait_for(lambda: any(r.trial_id == hung for r in stack.published()), 60, "the late answer", stack)
    time.sleep(1.5)  # the proposer reads the stream every 0.5 s at most
    assert by_trial(stack.trials(search_id))[hung]["error"] == trials[hung]["error"]
    assert total(stack.metrics("proposer"), "recycle_trials_total", search=search_id) == budget


def test_broken_checkpoints_fail_trials_with_the_reason(stack, demo_pool):
    """A pool copy whose specialist 'c' holds NaN weights (valid files: it registers and
    every merge using 'c' scores NaN), and a copy whose 'python' file is truncated after
    the search was accepted, before any worker opened it (workers held with SIGSTOP
    meanwhile). Trials fail with the reason, each runs once, both searches finish."""
    pools = stack.log_dir / "pools"
    nan_pool = pool_copy(demo_pool.pool, pools / "nan", "nan-pool")
    poison_with_nan(pools / "nan" / "c")
    cut_pool = pool_copy(demo_pool.pool, pools / "cut", "cut-pool")
    nan_id, cut_id = stack.register_pool(nan_pool), stack.register_pool(cut_pool)

    groups = [stack.processes[w].pid for w in stack.workers]
    for group in groups:
        os.killpg(group, signal.SIGSTOP)
    try:
        cut_search = stack.start_search(cut_id, demo_pool.tasks, budget=6, concurrency=2)
        truncate(pools / "cut" / "python" / "model.safetensors")
        nan_search = stack.start_search(nan_id, demo_pool.tasks, budget=8, concurrency=2)
    finally:
        for group in groups:
            os.killpg(group, signal.SIGCONT)
    stack.wait_completed(cut_search)
    stack.wait_completed(nan_search)

    cut = stack.trials(cut_search)
    assert len(cut) == 6 and len(by_trial(cut)) == 6
    for trial in cut:
        assert trial["status"] == "failed"
        assert "PoolError" in trial["error"] and "'python'" in trial["error"] and "truncated" in trial["error"], trial["error"]

    nan = by_trial(stack.trials(nan_search))
    assert len(nan) == 8
    sources = {t["source_text"]: t for t in nan.values()}
    assert sources["single:c"]["status"] == "failed" and "non-finite score" in sources["single:c"]["error"]
    for name in ("base", "python", "prose", "decimal"):
        assert sources[f"single:{name}"]["status"] == "ok"
    for trial in nan.values():  # every merge that gives 'c' weight fails, with the reason
        uses_c = trial["proposal"]["weights"][nan_pool.names.index("c")] > 0
        assert (trial["status"] == "failed") == uses_c, trial
        assert trial["status"] == "ok" or "FloatingPointError: non-finite score" in trial["error"]

    # Never retried: every trial ran exactly once, and was counted once.
    for trial_id in [*by_trial(cut), *nan]:
        assert starts(stack, trial_id) == 1, trial_id
    proposer = stack.metrics("proposer")
    assert total(proposer, "recycle_trials_total", search=cut_search, status="failed") == 6
    assert total(proposer, "recycle_trials_total", search=nan_search) == 8
    assert total(proposer, "recycle_trials_total", search=nan_search, status="failed") == \
        sum(t["status"] == "failed" for t in nan.values())


class WritesAFileWhenUnpickled:
    """Unpickling this calls open(path, "w"): proof of code run by a deserializer."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_workers_refuse_pickle_and_malformed_messages(stack, demo_pool, pool_id, tmp_path):
    """Messages sent straight to the trials queue. A pickled one is refused before it is
    deserialized (no code runs, no trial runs); JSON ones that are not a proposal, carry
    non-finite weights, or do not match the stored proposal (wrong weight count) are
    refused by validation before anything is opened; the genuine one runs."""
    stack.kill("proposer")  # alone on the queue: no trial is sent but ours
    search_id = stack.start_search(pool_id, demo_pool.tasks, budget=2, concurrency=1)
    spec = stack.store.get_search(search_id)
    [proposal] = SearchDriver(search_id, spec, stack.store).propose(1)  # stored as the proposer stores it
    genuine = proposal.model_dump(mode="json")
    sender = make_celery(stack.env["RECYCLE_REDIS_URL"])  # a JSON producer, as the proposer's
    before = {w: stack.metrics(w) for w in stack.workers}
    try:
        # Pickle: the message a JSON-only worker must never open.
        marker = tmp_path / "unpickled"
        evil = Celery("evil", broker=stack.env["RECYCLE_REDIS_URL"])
        evil.conf.update(task_serializer="pickle", accept_content=["pickle"])
        evil.send_task(keys.MERGE_AND_EVALUATE_TASK, args=[{**genuine, "x": WritesAFileWhenUnpickled(marker)}],
                       queue=keys.TRIALS_QUEUE, task_id="pickled-message", serializer="pickle")
        pickle.loads(pickle.dumps(WritesAFileWhenUnpickled(tmp_path / "control"))).close()
        assert (tmp_path / "control").exists()  # what unpickling would have done
        wait_for(lambda: "Refusing to deserialize untrusted content of type pickle" in worker_logs(stack), 60,
                 "a worker to refuse the pickled message", stack)
        assert not marker.exists()

        # JSON with the wrong shape, non-finite weights, a weight too many.
        bad = {
            "wrong-shape": {"search_id": search_id, "weights": "all of them"},
            "nan-weights": {**genuine, "weights": [math.nan] * len(proposal.weights)},
            "wrong-count": {**genuine, "weights": [*proposal.weights, 0.0]},
        }
        for task_id, payload in bad.items():
            sender.send_task(keys.MERGE_AND_EVALUATE_TASK, args=[payload], queue=keys.TRIALS_QUEUE, task_id=task_id)
        sender.send_task(keys.MERGE_AND_EVALUATE_TASK, args=[], queue=keys.TRIALS_QUEUE, task_id="no-arguments")
        # Celery logs the bad call's receipt before its refusal: wait for the refusal itself.
        wait_for(lambda: worker_logs(stack).count("refused") >= 3
                 and "missing 1 required positional argument" in worker_logs(stack), 60,
                 "the malformed messages to be refused", stack)
        logs = worker_logs(stack)
        assert "message wrong-shape refused: not a valid proposal" in logs
        assert "message nan-weights refused: not a valid proposal" in logs and "finite" in logs
        assert f"trial {proposal.trial_id} refused: the message does not carry the proposal the proposer stored" in logs
        assert "missing 1 required positional argument" in logs  # Celery's own refusal of a bad call
        assert starts(stack, proposal.trial_id) == 0
        refused = sum(total(stack.metrics(w), "recycle_worker_tasks_total", status="refused") -
                      total(before[w], "recycle_worker_tasks_total", status="refused") for w in stack.workers)
        assert refused == 3
        assert not any(r.trial_id == proposal.trial_id for r in stack.published())

        # The genuine message, the same way: it runs.
        sender.send_task(keys.MERGE_AND_EVALUATE_TASK, args=[genuine], queue=keys.TRIALS_QUEUE, task_id=proposal.trial_id)
        wait_for(lambda: any(r.trial_id == proposal.trial_id for r in stack.published()), 60, "the genuine trial", stack)
        assert starts(stack, proposal.trial_id) == 1 and not marker.exists()
    finally:
        http("POST", f"{stack.base}/v1/searches/{search_id}/cancel", {}, TOKEN)
        stack.restart("proposer")


def worker_logs(stack) -> str:
    return "".join(stack.log(w, tail=None) for w in stack.workers)


def test_proposer_killed_and_restarted_mid_search(stack, pool_id, demo_pool):
    """SIGKILL the proposer three times during one CMA-ES search and start it again: it
    resumes from Redis with the whole history, proposal numbers run 0..budget-1 once
    each, and no trial id ever went out with two different weight vectors."""
    budget, restarts = 24, 3
    outcome = proposer_restarts(stack, pool_id, demo_pool.tasks, restarts=restarts, budget=budget, strategy="cmaes")
    view = outcome["view"]
    assert view["status"] == "completed" and view["done"] == budget and view["failed"] == 0
    proposals = outcome["proposals"]
    assert [p.number for p in proposals] == list(range(budget))
    assert len({p.trial_id for p in proposals}) == budget
    assert {p.source.kind for p in proposals} >= {"cmaes", "uniform"}
    stored = {p.trial_id: p for p in proposals}
    # Every result any worker published (duplicates included) ran the stored proposal.
    assert outcome["published"] and all(r.proposal == stored[r.trial_id] for r in outcome["published"])
    trials = stack.trials(outcome["search_id"])
    assert len(trials) == budget and len(by_trial(trials)) == budget
    assert all(t["proposal"] == stored[t["proposal"]["trial_id"]].model_dump(mode="json") for t in trials)
    # Each restart loaded the search with everything recorded before the kill.
    loaded = outcome["loaded"]
    assert len(loaded) >= restarts + 1
    for before, after in zip(outcome["before_kills"], loaded[1:]):
        assert after["proposed"] == before["proposed"]
        assert after["done"] + after["failed"] >= before["recorded"] > 0
    assert f"{outcome['search_id']}-" not in "".join(l for l in worker_logs(stack).splitlines() if "refused" in l)


def test_no_secret_in_any_log(stack):
    assert_no_secret_in_logs(stack)
