"""The held-out verdict of finished searches on one pool: do the optimized merges really win?

The merges are selected on the search split; here they are judged on the held-out
report split against the baselines (best single checkpoint, uniform soup, greedy
soup), each with a paired bootstrap interval over the evaluation windows, and
every single checkpoint is checked for a front member that dominates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts import SearchSpec, TrialResult
from evaluator import Evaluator
from proposer import ParetoArchive, dominates, loss_vector
from recycle.report import Comparison, compare, is_single
from recycle.significance import Improvement, WindowLosses, macro_nll, paired_bootstrap

BASELINES = ("best single", "uniform soup", "greedy soup")
MAX_DRIFT = 0.02  # relative difference between a trial's held-out score and its re-scoring


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
        }


def held_out_verdict(
    runs: dict[str, tuple[SearchSpec, list[TrialResult]]], device: str = "cpu", resamples: int = 10_000
) -> Verdict | None:
    """`runs`: label (e.g. the strategy) -> (spec, results) of searches on the same pool and tasks."""
    comparisons = {label: compare(results, spec.objectives) for label, (spec, results) in runs.items()}
    comparisons = {label: c for label, c in comparisons.items() if c is not None}
    if not comparisons:
        return None
    spec = runs[next(iter(comparisons))][0]
    first: Comparison = next(iter(comparisons.values()))
    picked = {"best single": first.best_single, "uniform soup": first.uniform, "greedy soup": first.greedy}
    for label, comparison in comparisons.items():
        picked[f"optimized merge ({label})" if len(comparisons) > 1 else "optimized merge"] = comparison.best_merge
    picked = {label: result for label, result in picked.items() if result is not None}
    losses = _report_window_losses(spec, picked, device) if all(t.kind == "lm_loss" for t in spec.tasks) else {}
    entries = [
        Entry(
            label, result,
            {t: float(nll.sum() / tokens.sum()) for t, (nll, tokens) in losses[label].items()} if losses else result.report,
            macro_nll(losses[label]) if losses else first.report_macro(result),
            sum(1 for w in result.proposal.weights if w > 0.01),
        )
        for label, result in picked.items()
    ]
    verdict = Verdict(entries=entries)
    verdict.singles_dominated_by = _singles_dominated_by([r for _, results in runs.values() for r in results], spec)

    if losses:
        for merge in verdict.merges:
            verdict.improvements[merge.label] = {
                baseline: paired_bootstrap(losses[baseline], losses[merge.label], resamples=resamples)
                for baseline in BASELINES
                if baseline in losses
            }
    return verdict


def _report_window_losses(spec: SearchSpec, picked: dict[str, TrialResult], device: str) -> dict[str, WindowLosses]:
    """Re-merges each picked trial and scores every report window.

    The scores match the trial's to rounding: a bf16 model merged by another kernel or
    device may differ in the last bit of some weights, which moves a loss by ~0.1%.
    Beyond MAX_DRIFT the pool or the task files changed since the search: refused.
    """
    evaluator = Evaluator(spec, device=device)
    losses = {}
    for label, result in picked.items():
        evaluator.merge(result.proposal.weights)
        per_task = {}
        for task in evaluator.tasks:  # all LanguageModelLoss: the caller checked the kinds
            nll, tokens = task.window_losses(evaluator.resident.model, "report")
            per_task[task.name] = (nll.numpy(), tokens.numpy())
            recomputed = float(nll.sum() / tokens.sum())
            if abs(recomputed - result.report[task.name]) > MAX_DRIFT * max(1.0, abs(recomputed)):
                raise StaleRunError(
                    f"trial {result.trial_id} scores {recomputed:.5f} on {task.name} now, {result.report[task.name]:.5f}"
                    " in the search: the pool or task files changed since"
                )
        losses[label] = per_task
    return losses


def _singles_dominated_by(results: list[TrialResult], spec: SearchSpec) -> dict[str, str | None]:
    """For each single checkpoint: a search-split front member that beats it on every held-out task."""
    archive = ParetoArchive(spec.objectives)
    for result in results:
        archive.add(result)
    members = [r for r in archive.front if not is_single(r) and r.report]
    answer = {}
    for single in (r for r in results if is_single(r) and r.report):
        name = single.proposal.source.split(":", 1)[1]
        if answer.get(name):  # each search evaluates the singles: one dominating member is enough
            continue
        point = loss_vector(single.report, spec.objectives)
        winner = next((m for m in members if dominates(loss_vector(m.report, spec.objectives), point)), None)
        answer[name] = winner.trial_id if winner else None
    return answer
