"""Is one merge really better than another on held-out data? A paired cluster bootstrap, Holm-corrected.

Both models are scored on the same held-out items (windows, questions), so the
comparison is paired. Items are not independent: the windows of one document, the
documents of one source file share a style. The independent unit is the item's group
(evaluator.data: the split is made by group too), so the bootstrap resamples groups
with replacement, each task on its own (tasks have their own data), both models'
items together (scipy.stats.bootstrap), and recomputes each task's score as the ratio
of its resampled sums. A difference of normalized macro-averages is linear in the task
scores (proposer.normalize.task_weights), so its resampled values are the weighted sum
of the tasks' resampled differences.

One-sided p-values (H0: the candidate is not better) are read off the bootstrap
distribution; the verdict's comparisons are one family, corrected by Holm's step-down
method (written out here: statsmodels' multipletests runs gc.collect() on every call, 1.7 s
in a process that holds a model). Each comparison's interval is taken at the level of its Holm
step (alpha / (m - k) per tail for the k-th smallest p-value), so an interval clearing
zero and a Holm rejection say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import integrate, stats

from evaluator.tasks import ItemScores

ALPHA = 0.05
RESAMPLES = 10_000
TaskItems = dict[str, ItemScores]  # one model's held-out items, per task


def _ratio_difference(group_sums: np.ndarray, axis: int = -1) -> np.ndarray:
    """Rows: baseline numerator, candidate numerator, denominator, per group (resampled)."""
    baseline, candidate, denominator = (group_sums[i].sum(axis=axis) for i in range(3))
    return (baseline - candidate) / denominator


def resampled_differences(baseline: TaskItems, candidate: TaskItems, resamples: int = RESAMPLES,
                          seed: int = 0) -> dict[str, tuple[float, np.ndarray]]:
    """Per task: (baseline score - candidate score, its cluster-bootstrap replicates)."""
    if baseline.keys() != candidate.keys() or not baseline:
        raise ValueError("both models must be scored on the same, non-empty set of tasks")
    rng = np.random.default_rng(seed)
    answer = {}
    for task, base in baseline.items():
        cand = candidate[task]
        if not (np.array_equal(base.groups, cand.groups) and np.array_equal(base.denominator, cand.denominator)):
            raise ValueError(f"task {task!r}: the two models were not scored on the same items")
        n_groups = int(base.groups.max()) + 1
        sums = np.stack([np.bincount(base.groups, weights=values, minlength=n_groups)
                         for values in (base.numerator, cand.numerator, base.denominator)])
        point = float(_ratio_difference(sums))
        if n_groups < 2:  # nothing to resample: the interval is the point
            answer[task] = point, np.full(resamples, point)
            continue
        result = stats.bootstrap((sums,), _ratio_difference, n_resamples=resamples, vectorized=True, axis=-1,
                                 method="percentile", random_state=rng)
        answer[task] = point, result.bootstrap_distribution
    return answer


def cluster_standard_error(items: ItemScores, reference: np.ndarray | None = None) -> float:
    """Standard error of a task's score (a ratio of sums) with its groups as the independent units:
    the linearized (delta-method) cluster-robust variance, sum_g (num_g - score * den_g)^2 / den^2,
    with the small-sample factor G / (G - 1). With `reference` (another model's numerators on the
    same items) it is the error of the paired difference of the two scores, in which what the
    items share (their difficulty) cancels."""
    n_groups = int(items.groups.max()) + 1 if len(items.groups) else 0
    if n_groups < 2:
        return float("nan")
    numerator = items.numerator if reference is None else items.numerator - reference
    per_group = np.bincount(items.groups, weights=numerator, minlength=n_groups)
    denominator = np.bincount(items.groups, weights=items.denominator, minlength=n_groups)
    residuals = per_group - per_group.sum() / denominator.sum() * denominator
    return float(np.sqrt(n_groups / (n_groups - 1) * np.sum(residuals**2)) / denominator.sum())


def expected_noise_range(n: int) -> float:
    """Expected range of n independent standard normal draws: how far apart, in standard errors,
    n checkpoints of equal merit score by chance (2 E[max], by numerical integration)."""
    if n < 2:
        return 0.0
    density = lambda x: x * n * stats.norm.pdf(x) * stats.norm.cdf(x) ** (n - 1)  # noqa: E731
    return 2 * integrate.quad(density, -np.inf, np.inf)[0]


@dataclass(frozen=True)
class Test:
    """One comparison of the family: a difference that is positive where the candidate is better."""

    name: str
    diff: float
    replicates: np.ndarray = field(repr=False)
    groups: dict[str, int] = field(default_factory=dict)  # per task: groups resampled

    @property
    def p_value(self) -> float:
        """One-sided bootstrap p-value of H0 "the candidate is not better" (diff <= 0)."""
        return float((1 + np.count_nonzero(self.replicates <= 0)) / (1 + len(self.replicates)))


def macro_test(name: str, baseline: TaskItems, candidate: TaskItems, task_weights: dict[str, float],
               resamples: int = RESAMPLES, seed: int = 0) -> Test:
    """Difference of normalized macro-averages (baseline minus candidate: positive, the candidate is better).
    `task_weights`: per task, d(macro)/d(score) (sign included: a loss counts up, an accuracy down)."""
    per_task = resampled_differences(baseline, candidate, resamples, seed)
    diff = sum(task_weights[t] * point for t, (point, _) in per_task.items())
    replicates = sum(task_weights[t] * draws for t, (_, draws) in per_task.items())
    return Test(name, float(diff), np.asarray(replicates), {t: int(baseline[t].groups.max()) + 1 for t in baseline})


def worst_task_test(name: str, baseline: TaskItems, candidate: TaskItems, task_weights: dict[str, float],
                    resamples: int = RESAMPLES, seed: int = 0) -> Test:
    """Is the candidate better on every task? The statistic is the smallest per-task margin on the
    normalized scale (positive: better everywhere); its p-value is at least every task's own, so the
    test is valid for the intersection-union claim "better on every task" with no correction across
    tasks. Tasks are weighted as in the macro (any positive per-task scale gives the same sign)."""
    per_task = resampled_differences(baseline, candidate, resamples, seed)
    margins = [task_weights[t] * point for t, (point, _) in per_task.items()]
    replicates = np.min([task_weights[t] * draws for t, (_, draws) in per_task.items()], axis=0)
    return Test(name, float(min(margins)), replicates, {t: int(baseline[t].groups.max()) + 1 for t in baseline})


@dataclass(frozen=True)
class Decision:
    """A test of the family after Holm's correction."""

    test: Test
    p_holm: float
    significant: bool
    low: float  # interval at this test's Holm level (two-sided, equal tails)
    high: float
    confidence: float

    def as_dict(self) -> dict:
        return {"diff": self.test.diff, "lo": self.low, "hi": self.high, "p": self.test.p_value,
                "p_holm": self.p_holm, "significant": self.significant, "confidence": self.confidence,
                "groups": self.test.groups, "bootstrap_unit": "group", "correction": "holm"}


def holm(p_values: list[float], alpha: float = ALPHA) -> tuple[list[float], list[bool], list[float]]:
    """Holm-adjusted p-values, rejections, and each hypothesis' per-tail level alpha / (m - rank)."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted, reject, levels = [0.0] * m, [False] * m, [0.0] * m
    running, rejecting = 0.0, True
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))  # step-down: never below an earlier one
        rejecting = rejecting and p_values[i] <= alpha / (m - rank)  # stops at the first acceptance
        adjusted[i], reject[i], levels[i] = running, rejecting, alpha / (m - rank)
    return adjusted, reject, levels


def decide(tests: list[Test], alpha: float = ALPHA) -> list[Decision]:
    """Holm over the whole family; each interval at its step's level."""
    adjusted, reject, levels = holm([t.p_value for t in tests], alpha)
    decisions = []
    for test, p_holm, significant, tail in zip(tests, adjusted, reject, levels):
        low, high = np.quantile(test.replicates, [tail, 1 - tail])
        decisions.append(Decision(test, p_holm, significant, float(low), float(high), 1 - 2 * tail))
    return decisions
