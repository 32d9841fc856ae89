"""The held-out verdict of finished searches on one pool: do the optimized merges really win?

Everything is chosen on the search split and judged on the held-out report split,
which no trial's choice ever saw:
- the baselines: the best single checkpoint, the uniform soup, the greedy soup, each the
  best of its kind on the search split. (Picking the best single on the held-out split
  would hand it the winner's curse: of 17 noisy held-out scores the best is partly luck,
  and the test would read that luck as the single's merit.)
- each search's optimized merge: its own proposal with the best normalized macro-average
  on the search split;
- for each single checkpoint, one rival chosen in advance: the front member that
  dominates it on the search split by the largest worst-task margin.
Each comparison is a paired cluster bootstrap over the items' groups
(recycle.local.significance); all comparisons printed form one family, Holm-corrected.
A single is "dominated in point estimate" when its rival is better on every held-out
task, and "dominated with 95% confidence" when the worst-task margin's test rejects
after the correction. Left-out tasks (SearchSpec.left_out_tasks), never scored in
the search, show whether a merge generalizes: each merge against the greedy soup.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from contracts import SearchSpec, Source, TrialResult, TrialStatus
from proposer import ParetoArchive, dominates, normalization_of
from proposer.normalize import Normalization
from recycle.local.heldout import HeldOutScorer, StaleRunError  # noqa: F401 - StaleRunError: the CLI's error
from recycle.local.significance import (RESAMPLES, Decision, Test, cluster_standard_error, decide, expected_noise_range,
                                        macro_test, worst_task_test)

BASELINES = ("best single", "uniform soup", "greedy soup")


@dataclass(frozen=True)
class Entry:
    label: str
    result: TrialResult
    held_out: dict[str, float]  # raw score per task (objectives and left-out tasks), report split
    held_out_macro: float  # normalized macro-average of the objectives, report split
    weights_used: int  # checkpoints with weight > 0.01 (per layer group: in some group)


@dataclass(frozen=True)
class Dominance:
    single: str
    rival: TrialResult | None  # chosen on the search split; None: no front member dominates it there
    decision: Decision | None = None  # the worst-task margin's test (normalized scale)

    @property
    def in_point_estimate(self) -> bool:
        return self.decision is not None and self.decision.test.diff > 0

    @property
    def with_confidence(self) -> bool:
        return self.decision is not None and self.decision.significant and self.decision.test.diff > 0


@dataclass
class Verdict:
    entries: list[Entry]
    normalization: Normalization
    # merge label -> baseline label -> normalized macro difference (positive: the merge is better)
    comparisons: dict[str, dict[str, Decision]] = field(default_factory=dict)
    # merge label -> left-out task -> difference against the greedy soup (raw units, positive: better)
    left_out: dict[str, dict[str, Decision]] = field(default_factory=dict)
    dominance: list[Dominance] = field(default_factory=list)
    groups: dict[str, dict[str, int]] = field(default_factory=dict)  # task -> split -> groups evaluated
    # Objective -> the singles' held-out spread in standard errors (max - min over the cluster-robust
    # s.e. of a single's paired difference from the singles' mean, the median over singles).
    # Checkpoints of equal merit spread by `noise_range` by chance: a task near it cannot tell
    # the checkpoints apart, and its normalized scale (the singles' spread) is mostly noise.
    signal: dict[str, float] = field(default_factory=dict)
    noise_range: float = 0.0
    family_size: int = 0

    def entry(self, label: str) -> Entry | None:
        return next((e for e in self.entries if e.label == label), None)

    @property
    def merges(self) -> list[Entry]:
        return [e for e in self.entries if e.label not in BASELINES]

    def dominated_counts(self) -> tuple[int, int, int]:
        """(in point estimate, with 95% confidence after Holm, singles checked)."""
        return (sum(d.in_point_estimate for d in self.dominance), sum(d.with_confidence for d in self.dominance),
                len(self.dominance))

    def as_dict(self) -> dict:
        point, confident, singles = self.dominated_counts()
        return {
            "held_out_macro": {e.label: e.held_out_macro for e in self.entries},
            "held_out_scores": {e.label: e.held_out for e in self.entries},
            "trials": {e.label: e.result.trial_id for e in self.entries},
            "weights_used": {e.label: e.weights_used for e in self.entries},
            "comparisons": {m: {b: d.as_dict() for b, d in by.items()} for m, by in self.comparisons.items()},
            "left_out": {m: {t: d.as_dict() for t, d in by.items()} for m, by in self.left_out.items()},
            "dominance": {d.single: {"rival": d.rival.trial_id if d.rival else None,
                                     "worst_task_margin": d.decision.as_dict() if d.decision else None,
                                     "in_point_estimate": d.in_point_estimate, "with_confidence": d.with_confidence}
                          for d in self.dominance},
            "dominated": {"in_point_estimate": point, "with_confidence": confident, "singles": singles},
            "groups": self.groups,
            "signal": {"spread_in_standard_errors": self.signal, "noise_range": self.noise_range},
            "normalization": self.normalization.as_dict(),
            "family_size": self.family_size,
            "correction": "holm",
            "bootstrap_unit": "group",
        }


def source_of(result: TrialResult) -> Source:
    return Source.model_validate(result.proposal.source)


def held_out_verdict(runs: dict[str, tuple[SearchSpec, list[TrialResult]]], device: str = "cpu",
                     resamples: int = RESAMPLES, progress=None, scorer: HeldOutScorer | None = None) -> Verdict | None:
    """`runs`: label (e.g. the strategy) -> (spec, results) of searches on the same pool and tasks.
    `progress(done, total)`, if given, hears of each held-out scoring. `scorer`: one to reuse
    (its held-out scores of the singles and soups serve every verdict on the pool)."""
    spec, first_results = next(iter(runs.values()))
    if len({s.merge.weights for s, _ in runs.values()}) > 1:
        raise ValueError("the runs have different weight layouts (merge.weights): judge each layout in its own verdict")
    scale = normalization_of(spec, first_results)
    if scale is None:
        return None
    every = [r for _, results in runs.values() for r in results if r.status is TrialStatus.ok]
    singles = _unique_singles(every)
    scorer = scorer or HeldOutScorer(spec, device)
    picks = _baselines(first_results, singles, scale)
    for label, (_, results) in runs.items():
        own = [r for r in results if r.status is TrialStatus.ok and not source_of(r).is_baseline]
        if own:
            picks[f"optimized merge ({label})" if len(runs) > 1 else "optimized merge"] = min(
                own, key=lambda r: scale.macro(r.scores))
    if "best single" not in picks or len(picks) < 2:
        return None
    front = _front_merges(every, scale)
    rivals = {name: _rival(single, front, scale) for name, single in singles.items()}
    scored = [*picks.values(), *(r for r in rivals.values() if r is not None), *singles.values()]
    scorer.expect(len({r.proposal.weights for r in scored}), progress)

    tasks = {o.name: w for o, w in zip(scale.objectives, scale.task_weights())}
    entries = []
    for label, result in picks.items():
        held_out = scorer.scores(result)
        by_checkpoint = spec.merge.weights.by_checkpoint(spec.pool.names, result.proposal.weights)
        entries.append(Entry(label, result, held_out, scale.macro(held_out),
                             sum(1 for values in by_checkpoint.values() if max(values) > 0.01)))
    verdict = Verdict(entries=entries, normalization=scale, groups=scorer.group_counts(),
                      signal=_signal(singles, tasks, scorer), noise_range=expected_noise_range(len(singles)))

    tests: list[tuple[str, str, str, Test]] = []  # (family part, merge or single, against what, test)
    for merge in verdict.merges:
        for baseline in BASELINES:
            if baseline in picks:
                tests.append(("macro", merge.label, baseline, macro_test(
                    f"{merge.label} vs {baseline}", scorer.items(picks[baseline], tasks),
                    scorer.items(merge.result, tasks), tasks, resamples)))
        for task in spec.left_out_tasks if "greedy soup" in picks else ():
            sign = {task.name: task.direction.sign}
            tests.append(("left out", merge.label, task.name, macro_test(
                f"{merge.label} vs greedy soup on {task.name}", scorer.items(picks["greedy soup"], sign),
                scorer.items(merge.result, sign), sign, resamples)))
    for name, rival in rivals.items():
        if rival is not None:
            tests.append(("dominance", name, rival.trial_id, worst_task_test(
                f"{rival.trial_id} dominates {name}", scorer.items(singles[name], tasks),
                scorer.items(rival, tasks), tasks, resamples)))
    decisions = decide([test for *_, test in tests])
    verdict.family_size = len(decisions)
    by_single = {}
    for (part, subject, other, _), decision in zip(tests, decisions):
        if part == "macro":
            verdict.comparisons.setdefault(subject, {})[other] = decision
        elif part == "left out":
            verdict.left_out.setdefault(subject, {})[other] = decision
        else:
            by_single[subject] = decision
    verdict.dominance = [Dominance(name, rivals[name], by_single.get(name)) for name in singles]
    return verdict


def _signal(singles: dict[str, TrialResult], tasks, scorer: HeldOutScorer) -> dict[str, float]:
    """Per objective: the singles' held-out spread over the median standard error of a single's
    paired difference from the singles' mean (item difficulty cancels, as in the verdict's tests)."""
    items = [scorer.items(single, tasks) for single in singles.values()]
    signal = {}
    for task in tasks:
        scores = [i[task].score for i in items]
        mean = np.mean([i[task].numerator for i in items], axis=0)
        error = float(np.median([cluster_standard_error(i[task], reference=mean) for i in items]))
        signal[task] = (max(scores) - min(scores)) / error if error > 0 else float("inf")
    return signal


def _unique_singles(results: list[TrialResult]) -> dict[str, TrialResult]:
    """Each single checkpoint once (every search scores the same singles first)."""
    singles: dict[str, TrialResult] = {}
    for result in results:
        source = source_of(result)
        if source.kind == "single":
            singles.setdefault(source.checkpoint, result)
    return singles


def _baselines(results, singles, scale) -> dict[str, TrialResult]:
    """The best single, the uniform soup, the greedy soup's best step: all on the search split."""
    ok = [r for r in results if r.status is TrialStatus.ok]
    picks: dict[str, TrialResult] = {}
    if singles:
        picks["best single"] = min(singles.values(), key=lambda r: scale.macro(r.scores))
    for kind, label in (("uniform", "uniform soup"), ("greedy", "greedy soup")):
        candidates = [r for r in ok if source_of(r).kind == kind]
        if candidates:
            picks[label] = min(candidates, key=lambda r: scale.macro(r.scores))
    return picks


def _front_merges(results: list[TrialResult], scale: Normalization) -> list[tuple[TrialResult, list[float]]]:
    """The search-split front of every search, singles left out, with normalized loss vectors."""
    archive = ParetoArchive(scale.objectives)
    for result in results:
        archive.add(result)
    return [(r, scale.losses(r.scores)) for r in archive.front if source_of(r).kind != "single"]


def _rival(single: TrialResult, front: list[tuple[TrialResult, list[float]]], scale: Normalization) -> TrialResult | None:
    """The front member that dominates `single` on the search split by the largest worst-task
    margin: chosen before any held-out number is read."""
    target = scale.losses(single.scores)
    best, best_margin = None, 0.0
    for member, point in front:
        if dominates(point, target):
            margin = min(t - p for t, p in zip(target, point))
            if best is None or margin > best_margin:
                best, best_margin = member, margin
    return best
