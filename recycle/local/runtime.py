"""The embedded runtime: proposer, evaluators and store in one process.

The same SearchDriver the distributed proposer uses hands out proposals; a
small thread pool evaluates them (torch releases the GIL inside its kernels),
each thread with its own resident model. There is no generation barrier: a new
proposal is asked for as soon as the oldest trial in flight has returned.

Results are recorded in trial order, and after the first `workers` asks each ask
follows exactly one record, so the strategy sees the same history at every ask
whichever thread finishes first: with the same number of workers a search (and the
demo's verdict) is reproducible run to run. The price is that a trial that finished
before an older one waits for it, holding its slot; with trials of equal cost that
is a small fraction of a trial.
"""

from __future__ import annotations

import os
import queue
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

import torch

from contracts import SearchSpec, SearchStatus, TrialResult
from evaluator import Evaluator
from proposer import MemoryStore, SearchDriver, SearchStore


class EvaluatorPool:
    """Evaluators (each with its own resident model) lent to one trial at a time.

    The first is built right away, so a bad pool or task file fails before the
    search starts; more are built when trials overlap.
    """

    def __init__(self, spec: SearchSpec, device: str):
        self.spec, self.device = spec, device
        self.idle: queue.SimpleQueue[Evaluator] = queue.SimpleQueue()
        self.idle.put(Evaluator(spec, device=device))

    def evaluate(self, proposal) -> TrialResult:
        try:
            evaluator = self.idle.get_nowait()
        except queue.Empty:
            evaluator = Evaluator(self.spec, device=self.device)
        try:
            return evaluator.evaluate(proposal)
        finally:
            self.idle.put(evaluator)


def run_search(
    spec: SearchSpec,
    search_id: str,
    trials_path: Path,
    store: SearchStore | None = None,
    workers: int | None = None,
    device: str = "cpu",
    on_result: Callable[[SearchDriver, TrialResult], None] | None = None,
    evaluators: EvaluatorPool | None = None,
) -> SearchDriver:
    """Run one search to its budget; every result is appended to `trials_path` as a JSON line.
    `evaluators`: an EvaluatorPool to reuse (several searches on one pool and tasks)."""
    workers = workers or min(spec.concurrency, os.cpu_count() or 1)
    # Share the cores between worker threads instead of oversubscribing them; restored after,
    # so what runs next in this process (the verdict) has every core again.
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    try:
        return _run(spec, search_id, trials_path, store, workers, on_result, evaluators or EvaluatorPool(spec, device))
    finally:
        torch.set_num_threads(threads)


def _run(spec: SearchSpec, search_id: str, trials_path: Path, store: SearchStore | None, workers: int,
         on_result: Callable[[SearchDriver, TrialResult], None] | None, evaluators: EvaluatorPool) -> SearchDriver:
    # The evaluators were built first: a bad pool or task fails before anything is stored.
    store = store or MemoryStore()
    if store.get_search(search_id) is None:
        store.create_search(search_id, spec)
        store.set_status(search_id, SearchStatus.running)
    driver = SearchDriver(search_id, spec, store)

    trials_path.parent.mkdir(parents=True, exist_ok=True)
    with trials_path.open("a", encoding="utf-8") as trials_file, ThreadPoolExecutor(workers) as pool:
        in_flight: dict = {}  # future -> proposal
        outstanding: list[int] = []  # numbers proposed and not yet recorded, oldest first
        returned: dict[int, TrialResult] = {}  # back, waiting for an older trial to be recorded
        for proposal in driver.pending():  # a resumed search: trials proposed but never recorded
            in_flight[pool.submit(evaluators.evaluate, proposal)] = proposal
            outstanding.append(proposal.number)
        while not driver.finished:
            for proposal in driver.propose(workers - len(outstanding)):
                in_flight[pool.submit(evaluators.evaluate, proposal)] = proposal
                outstanding.append(proposal.number)
            if not outstanding:
                raise RuntimeError("the search has nothing in flight and proposes nothing: it cannot finish")
            while outstanding[0] not in returned:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    returned[in_flight.pop(future).number] = future.result()
            result = returned.pop(outstanding.pop(0))  # one record, then one ask: see the module's docstring
            if driver.record(result):
                trials_file.write(result.model_dump_json() + "\n")
                trials_file.flush()
                if on_result:
                    on_result(driver, result)
    store.set_status(search_id, SearchStatus.completed)
    return driver
