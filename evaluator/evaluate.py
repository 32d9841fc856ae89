"""`Evaluator.evaluate(proposal) -> TrialResult`: merge, score, time, never raise.

One Evaluator per (pool, tasks, merge) per worker process: it opens the pool,
builds the resident model and tokenizes the task data once. Any failure inside
a trial becomes a failed TrialResult with the reason, so a bad trial never
takes a worker or a search down.
"""

from __future__ import annotations

import math
import os
import socket
import time

import torch
from transformers import AutoTokenizer

from contracts import Proposal, SearchSpec, TrialResult, TrialStatus
from evaluator.model import ResidentModel
from evaluator.tasks import make_task
from merger import CheckpointPool, fused, get_method


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Evaluator:
    def __init__(self, spec: SearchSpec, device: str = "cpu", allowed_roots=None):
        self.spec = spec
        self.pool = CheckpointPool.open(spec.pool, allowed_roots=allowed_roots).to_device(device)
        self.resident = ResidentModel(self.pool, device=device)
        self.method = get_method(spec.merge.method)(self.pool, spec.merge)
        self.tokenizer = AutoTokenizer.from_pretrained(self.pool.config_dir)
        self.tasks = [make_task(task, self.tokenizer, self.resident.max_positions) for task in spec.tasks]

    def merge(self, weights) -> None:
        self.method.merge_into(self.method.check_weights(weights), self.resident.targets)

    def scores(self, split: str) -> dict[str, float]:
        with fused.forward_pass():  # no merge kernel is traced meanwhile (see merger.fused)
            return {task.name: task.score(self.resident.model, split) for task in self.tasks}

    def evaluate(self, proposal: Proposal) -> TrialResult:
        started = time.perf_counter()
        merge_seconds = eval_seconds = 0.0
        try:
            self.merge(proposal.weights)
            merge_seconds = time.perf_counter() - started
            scores = self.scores("search")
            report = self.scores("report") if self.spec.report_every_trial else {}
            eval_seconds = time.perf_counter() - started - merge_seconds
            bad = [name for name, value in {**scores, **report}.items() if not math.isfinite(value)]
            if bad:
                raise FloatingPointError(f"non-finite score for task {bad[0]!r}")
        except Exception as error:  # noqa: BLE001 - any trial failure is reported, not raised
            if isinstance(error, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
            return self._result(proposal, started, merge_seconds, eval_seconds, error=f"{type(error).__name__}: {error}")
        return self._result(proposal, started, merge_seconds, eval_seconds, scores=scores, report=report)

    def _result(self, proposal, started, merge_seconds, eval_seconds, scores=None, report=None, error=None):
        return TrialResult(
            proposal=proposal,
            status=TrialStatus.failed if error else TrialStatus.ok,
            scores=scores or {},
            report=report or {},
            error=error[:4000] if error else None,
            merge_seconds=merge_seconds,
            eval_seconds=eval_seconds,
            total_seconds=time.perf_counter() - started,
            worker=worker_name(),
            finished_at=time.time(),
        )
