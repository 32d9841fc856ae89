"""Scoring trials on the held-out report split, item by item, once per distinct merge.

The verdict's only source of held-out numbers. It re-merges a trial's weights on a
resident model and scores the report split of every objective and every left-out
task (SearchSpec.left_out_tasks), keeping each item's numerator, denominator and
group for the cluster bootstrap. Where a trial carries held-out scores of its own
(report_every_trial), they must match: a bf16 model merged by another kernel or
device may differ in the last bit of some weights, which moves a loss by ~0.1%;
beyond MAX_DRIFT the pool or the task files changed since the search: refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from contracts import SearchSpec, TrialResult
from evaluator import Evaluator
from evaluator.tasks import ItemScores, make_task
from merger import fused

MAX_DRIFT = 0.02  # relative difference between a trial's held-out score and its re-scoring


class StaleRunError(RuntimeError):
    """A trial no longer scores what it scored in its search: its pool or task files changed."""


class HeldOutScorer:
    def __init__(self, spec: SearchSpec, device: str):
        self.spec, self.device = spec, device
        self._evaluator: Evaluator | None = None  # opened on first use: it maps the whole pool
        self._tasks: list = []
        self._items: dict[tuple[float, ...], dict[str, ItemScores]] = {}
        self._total, self._progress = 0, None

    def expect(self, total: int, progress: Callable[[int, int], object] | None) -> None:
        """Report (scored, total) to `progress` after each new scoring; total is a forecast."""
        self._total, self._progress = max(total, len(self._items)), progress

    def scores(self, result: TrialResult) -> dict[str, float]:
        """Raw score per task (objectives and left-out tasks) on the report split."""
        scores = {task: items.score for task, items in self._scored(result).items()}
        for task, stored in result.report.items():
            value = scores.get(task)
            if value is not None and abs(value - stored) > MAX_DRIFT * max(1.0, abs(value)):
                raise StaleRunError(
                    f"trial {result.trial_id} scores {value:.5f} on {task} now, {stored:.5f}"
                    " in the search: the pool or task files changed since"
                )
        return scores

    def items(self, result: TrialResult, tasks: Iterable[str]) -> dict[str, ItemScores]:
        """Per named task: the trial's report-split items."""
        scored = self._scored(result)
        return {task: scored[task] for task in tasks}

    def group_counts(self) -> dict[str, dict[str, int]]:
        """Per task: how many groups (independent sources) each split evaluates."""
        return {task.name: {split: task.group_count(split) for split in ("search", "report")} for task in self._tasks}

    def _scored(self, result: TrialResult) -> dict[str, ItemScores]:
        weights = result.proposal.weights
        if weights not in self._items:
            evaluator = self._open()
            evaluator.merge(weights)
            with fused.forward_pass():  # no merge kernel is traced meanwhile (see merger.fused)
                self._items[weights] = {t.name: t.item_scores(evaluator.resident.model, "report") for t in self._tasks}
            if self._progress is not None:
                self._total = max(self._total, len(self._items))
                self._progress(len(self._items), self._total)
        return self._items[weights]

    def _open(self) -> Evaluator:
        if self._evaluator is None:
            self._evaluator = Evaluator(self.spec, device=self.device)
            left_out = [make_task(t, self._evaluator.tokenizer, self._evaluator.resident.max_positions)
                        for t in self.spec.left_out_tasks]
            self._tasks = [*self._evaluator.tasks, *left_out]
        return self._evaluator
