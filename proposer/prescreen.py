"""Choosing among a strategy's candidates the one predicted to add most to the Pareto front.

A strategy draws several candidates per ask from its own model (TPE's density of good
points, CMA-ES's search distribution, random search's Dirichlet; see
proposer.sources.Prescreened and Algorithm.candidates); a quadratic surrogate of every
task (`proposer.surrogate`) predicts each candidate's losses, and the candidate whose
predicted point adds the most hypervolume to the front is proposed. The strategy
decides where to look, the surrogate which of its ideas to pay a trial for; the
strategy still learns from the real result only.

Hypervolume is what the search is judged by and what a scalar optimizer does not
aim for: told the macro-average, TPE and CMA-ES concentrate near its optimum and
barely beat random search on the front (bench/search.py). Pending trials enter the
front with their predicted losses, so concurrent asks do not all chase the same gap.
A candidate predicted to be dominated scores minus its distance to the front (how
much better it would need to be on every task), so the least bad one is chosen.

`pick_exploiting` is the pick the driver tries every few asks: the candidate with the
lowest predicted macro-average (the number users select a merge by), but only where the
surrogate is confident it beats the best macro-average seen: by more than its own
leave-one-out error. Otherwise the ask takes the hypervolume pick: an exploiting trial
the model cannot tell from the best seen mostly re-measures the optimum's neighbourhood.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from proposer.pareto import hypervolume, non_dominated
from proposer.strategies.base import Weights
from proposer.surrogate import MAX_WEIGHTS, QuadraticSurrogate, n_linear_terms

# Reference point in normalized loss space (0: best seen, 1: worst seen), as the
# search's own reference point adds 10% of each objective's range.
REFERENCE = 1.1
# The surrogate is fitted to the first trials (the baselines anchor it) and the most
# recent ones: its cost grows with the trials it reads, its accuracy barely does.
FIT_FIRST, FIT_RECENT = 50, 200


class HypervolumePrescreen:
    """Built for one ask from the finished trials and the pending ones.

    `observed`: (strategy weights, loss vector) of every ok trial, in trial order;
    `front`: the loss vectors of the non-dominated ones (the driver keeps them; None:
    found here); `pending`: strategy weights of the trials in flight. With too few trials
    to fit a model, `pick` returns the strategy's first candidate (its own choice).
    """

    def __init__(
        self,
        observed: Sequence[tuple[Weights, Sequence[float]]],
        pending: Sequence[Weights],
        on_simplex: bool,
        front: Sequence[Sequence[float]] | None = None,
    ):
        self.surrogate: QuadraticSurrogate | None = None
        if not observed:
            return
        x = np.array([w for w, _ in observed], dtype=float)
        losses = np.array([loss for _, loss in observed], dtype=float)
        n_weights = x.shape[1]
        if n_weights > MAX_WEIGHTS or len(observed) < n_linear_terms(n_weights, on_simplex) + 2:
            return
        self._best_mean = float(losses.mean(axis=1).min())
        self._low = losses.min(axis=0)
        span = losses.max(axis=0) - self._low
        self._scale = np.where(span > 0, span, 1.0)
        points = self._normalize(losses)
        fit = np.r_[0 : min(FIT_FIRST, len(x)), max(FIT_FIRST, len(x) - FIT_RECENT) : len(x)]
        self.surrogate = QuadraticSurrogate(x[fit], points[fit], on_simplex)
        if front is not None:
            points = self._normalize(np.array(front, dtype=float).reshape(-1, losses.shape[1]))
        if pending:
            points = np.vstack([points, self.surrogate.predict(np.array(pending, dtype=float))])
        self.front = points[non_dominated(points)]

    def _normalize(self, losses: np.ndarray) -> np.ndarray:
        return (losses - self._low) / self._scale

    def scores(self, candidates: Sequence[Weights]) -> list[float]:
        """Predicted hypervolume improvement per candidate (negative: predicted dominated)."""
        if self.surrogate is None:
            return [0.0] * len(candidates)
        predicted = self.surrogate.predict(np.array(candidates, dtype=float))
        return [improvement(p, self.front) for p in predicted]

    def pick(self, candidates: Sequence[Weights]) -> int:
        """Index of the candidate to propose."""
        if self.surrogate is None or len(candidates) == 1:
            return 0
        scores = self.scores(candidates)
        return max(range(len(candidates)), key=lambda i: (scores[i], -i))

    def pick_exploiting(self, candidates: Sequence[Weights]) -> int | None:
        """Index of the candidate with the lowest predicted mean loss (the macro-average) if it is
        predicted to beat the best mean seen by more than the prediction's error, else None."""
        if self.surrogate is None:
            return None
        predicted = self.surrogate.predict(np.array(candidates, dtype=float)) * self._scale + self._low
        means = predicted.mean(axis=1)
        # Leave-one-out error of a mean over the tasks, as if their errors were independent.
        error = float(np.mean(self.surrogate.loo_rmse * self._scale)) / np.sqrt(predicted.shape[1])
        best = int(np.argmin(means))
        return best if means[best] < self._best_mean - error else None


def improvement(point: np.ndarray, front: np.ndarray) -> float:
    """Hypervolume `point` adds to `front` (rows; reference REFERENCE in every objective),
    or minus the smallest uniform improvement that would make it non-dominated."""
    point, front = np.asarray(point, dtype=float), np.asarray(front, dtype=float).reshape(-1, len(point))
    covered = front[(front <= point).all(axis=1)]
    if len(covered):
        # Shifting point down by d on every objective escapes f once d > min_k(point_k - f_k).
        return -float((point - covered).min(axis=1).max())
    box = float(np.prod(np.maximum(REFERENCE - point, 0.0)))
    if box == 0.0:
        return 0.0
    # What the front already covers of point's box: the front clipped to that box.
    clipped = np.unique(np.maximum(front, point), axis=0)
    clipped = clipped[non_dominated(clipped)]
    return box - hypervolume(clipped.tolist(), [REFERENCE] * len(point))
