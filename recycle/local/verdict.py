"""The held-out verdict of finished searches on one pool: do the optimized merges really win?

The merges are selected on the search split; here they are judged on the held-out
report split against the baselines (best single checkpoint, uniform soup, greedy
soup), each with a paired bootstrap interval over the evaluation windows, and
every single checkpoint is checked for a front member that dominates it (on the
search split, confirmed on the held-out one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from contracts import SearchSpec, TrialResult, TrialStatus
from evaluator import Evaluator
from evaluator.tasks import LanguageModelLoss
from proposer import ParetoArchive, dominates, loss_vector, macro_average
from recycle.local.report import Comparison, compare, is_single
from recycle.local.significance import Improvement, WindowLosses, macro_nll, paired_bootstrap

BASELINES = ("best single", "uniform soup", "greedy soup")
MAX_DRIFT = 0.02  # relative difference between a trial's held-out score and its re-scoring
# Front members scored on the held-out split per single checkpoint, at most.
MAX_DOMINANCE_CHECKS = 3


class StaleRunError(RuntimeError):
    """A trial no longer scores what it scored in its search: its pool or task files changed."""


@dataclass(frozen=True)
class Entry:
    label: str
    result: TrialResult
    # Per task and their macro-average, as re-scored for the bootstrap (lm_loss tasks), else the trial's.
    held_out: dict[str, float]
    held_out_macro: float
    weights_used: int  # checkpoints with weight > 0.01


@dataclass
class Verdict:
    entries: list[Entry]
    # merge label -> baseline label -> improvement (absent where a task is not lm_loss)
    improvements: dict[str, dict[str, Improvement]] = field(default_factory=dict)
    # single checkpoint -> the front member that dominates it on the report split (None: none does)
    singles_dominated_by: dict[str, str | None] = field(default_factory=dict)
    # dominated single -> how much lower that member's held-out loss is on the task where it is least lower
    dominance_margins: dict[str, float] = field(default_factory=dict)

    def entry(self, label: str) -> Entry | None:
        return next((e for e in self.entries if e.label == label), None)

    @property
    def merges(self) -> list[Entry]:
        return [e for e in self.entries if e.label not in BASELINES]

    def as_dict(self) -> dict:
        return {
            "held_out_macro": {e.label: e.held_out_macro for e in self.entries},
            "trials": {e.label: e.result.trial_id for e in self.entries},
            "weights_used": {e.label: e.weights_used for e in self.entries},
            "paired_bootstrap": {m: {b: i.as_dict() for b, i in by.items()} for m, by in self.improvements.items()},
            "singles_dominated_by": self.singles_dominated_by,
            "dominance_margins": self.dominance_margins,
        }


def held_out_verdict(
    runs: dict[str, tuple[SearchSpec, list[TrialResult]]], device: str = "cpu", resamples: int = 10_000
) -> Verdict | None:
    """`runs`: label (e.g. the strategy) -> (spec, results) of searches on the same pool and tasks.

    Every held-out number is scored here (HeldOutScorer), so trials need not have scored
    the report split (SearchOptions.report_every_trial); where they did, it is the check
    that the pool and task files are unchanged."""
    spec = next(iter(runs.values()))[0]
    scorer = HeldOutScorer(spec, device)
    # The best single is picked on the held-out split (the strongest baseline): score every single.
    runs = {label: (s, [scorer.with_report(r) if is_single(r) and r.status is TrialStatus.ok else r for r in results])
            for label, (s, results) in runs.items()}
    comparisons = {label: compare(results, s.objectives) for label, (s, results) in runs.items()}
    comparisons = {label: c for label, c in comparisons.items() if c is not None}
    if not comparisons:
        return None
    first: Comparison = next(iter(comparisons.values()))
    picked = {"best single": first.best_single, "uniform soup": first.uniform, "greedy soup": first.greedy}
    for label, comparison in comparisons.items():
        picked[f"optimized merge ({label})" if len(comparisons) > 1 else "optimized merge"] = comparison.best_merge
    picked = {label: result for label, result in picked.items() if result is not None}
    bootstrap = all(t.kind == "lm_loss" for t in spec.tasks)
    entries = []
    for label, result in picked.items():
        held_out = scorer.report(result)
        entries.append(Entry(
            label, result, held_out,
            macro_nll(scorer.windows(result)) if bootstrap else macro_average(held_out, spec.objectives),
            sum(1 for w in result.proposal.weights if w > 0.01),
        ))
    verdict = Verdict(entries=entries)
    every_result = [r for _, results in runs.values() for r in results]
    verdict.singles_dominated_by = _singles_dominated_by(every_result, spec, scorer)
    verdict.dominance_margins = _dominance_margins(verdict.singles_dominated_by, every_result, spec, scorer)

    if bootstrap:
        for merge in verdict.merges:
            verdict.improvements[merge.label] = {
                baseline: paired_bootstrap(scorer.windows(picked[baseline]), scorer.windows(merge.result), resamples=resamples)
                for baseline in BASELINES
                if baseline in picked
            }
    return verdict


class HeldOutScorer:
    """Re-merges trials and scores their report split, once per distinct merge.

    lm_loss tasks are scored window by window (for the paired bootstrap). The scores
    match a trial's own held-out scores, where it has them, to rounding: a bf16 model
    merged by another kernel or device may differ in the last bit of some weights, which
    moves a loss by ~0.1%. Beyond MAX_DRIFT the pool or the task files changed since the
    search: refused.
    """

    def __init__(self, spec: SearchSpec, device: str):
        self.spec, self.device = spec, device
        self._evaluator: Evaluator | None = None  # opened on first use: it maps the whole pool
        self._reports: dict[tuple[float, ...], dict[str, float]] = {}
        self._windows: dict[tuple[float, ...], WindowLosses] = {}

    def report(self, result: TrialResult) -> dict[str, float]:
        """Per task: the trial's score on the report split."""
        weights = result.proposal.weights
        if weights not in self._reports:
            self._score(weights)
        scores = self._reports[weights]
        for task, value in scores.items():
            stored = result.report.get(task)
            if stored is not None and abs(value - stored) > MAX_DRIFT * max(1.0, abs(value)):
                raise StaleRunError(
                    f"trial {result.trial_id} scores {value:.5f} on {task} now, {stored:.5f}"
                    " in the search: the pool or task files changed since"
                )
        return scores

    def windows(self, result: TrialResult) -> WindowLosses:
        """Per lm_loss task: (summed NLL, predicted tokens) of every report window."""
        self.report(result)
        return self._windows[result.proposal.weights]

    def with_report(self, result: TrialResult) -> TrialResult:
        return result.model_copy(update={"report": self.report(result)})

    def _score(self, weights: tuple[float, ...]) -> None:
        if self._evaluator is None:
            self._evaluator = Evaluator(self.spec, device=self.device)
        evaluator = self._evaluator
        evaluator.merge(weights)
        scores, windows = {}, {}
        for task in evaluator.tasks:
            if isinstance(task, LanguageModelLoss):
                nll, tokens = task.window_losses(evaluator.resident.model, "report")
                windows[task.name] = (nll.numpy(), tokens.numpy())
                scores[task.name] = float(nll.sum() / tokens.sum())
            else:
                scores[task.name] = task.score(evaluator.resident.model, "report")
        self._reports[weights], self._windows[weights] = scores, windows


def _singles_dominated_by(results: list[TrialResult], spec: SearchSpec, scorer: HeldOutScorer) -> dict[str, str | None]:
    """For each single checkpoint: a search-split front member that dominates it on the search split
    and on every held-out task (None: none does).

    Selected on the search split, confirmed on the held-out one: only members that dominate the
    single on the search split are scored, the MAX_DOMINANCE_CHECKS with the largest worst-task
    margin first (each costs a held-out scoring)."""
    archive = ParetoArchive(spec.objectives)
    for result in results:
        archive.add(result)
    # Front members (not singles) with their search-split loss vectors, read once for every single.
    members = [(r, np.array(loss_vector(r.scores, spec.objectives))) for r in archive.front if not is_single(r)]
    answer = {}
    for single in (r for r in results if is_single(r) and r.status is TrialStatus.ok):
        name = single.proposal.source.split(":", 1)[1]
        if answer.get(name):  # each search evaluates the singles: one dominating member is enough
            continue
        on_search = np.array(loss_vector(single.scores, spec.objectives))
        rivals = sorted(((m, float((point - on_search).max())) for m, point in members if dominates(point, on_search)),
                        key=lambda rival: rival[1])
        held_out = loss_vector(scorer.report(single), spec.objectives)
        answer[name] = next(
            (m.trial_id for m, _ in rivals[:MAX_DOMINANCE_CHECKS]
             if dominates(loss_vector(scorer.report(m), spec.objectives), held_out)),
            None,
        )
    return answer


def _dominance_margins(dominated_by: dict[str, str | None], results: list[TrialResult], spec: SearchSpec,
                       scorer: HeldOutScorer) -> dict[str, float]:
    """Per dominated single: the held-out loss its dominating member saves on the task where it saves least."""
    by_id = {r.trial_id: r for r in results}
    singles = {r.proposal.source.split(":", 1)[1]: r for r in results if is_single(r) and r.status is TrialStatus.ok}
    margins = {}
    for name, trial_id in dominated_by.items():
        if trial_id is not None:
            single = loss_vector(scorer.report(singles[name]), spec.objectives)
            member = loss_vector(scorer.report(by_id[trial_id]), spec.objectives)
            margins[name] = min(s - m for s, m in zip(single, member))
    return margins
