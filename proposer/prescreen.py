"""Choosing among a strategy's candidates the one most likely to add to the Pareto front.

A strategy draws several candidates per ask from its own model (TPE's density of good
points, random search's Dirichlet; see proposer.sources.Prescreened); a quadratic
surrogate of every task (`proposer.surrogate`) predicts each candidate's losses with a
posterior sd, and the candidate whose optimistic point adds the most hypervolume to the
front is proposed. The strategy decides where to look, the surrogate which of its ideas
to pay a trial for; the strategy still learns from the real result only.

The acquisition is SMS-EGO's (Ponweiser et al., 2008, "Multiobjective optimization on a
limited budget of evaluations using model-assisted S-metric selection"): the hypervolume
a candidate's lower confidence bound mean - gain * sd adds to the front, and for a bound
some point of the front dominates, minus how far it is from escaping (its additive
epsilon-dominance distance), so the least bad one is chosen. The gain is not tuned: it
makes the bound hold on all m tasks at once with probability one half (Phi(gain)^m = 1/2),
so a candidate with an uncertain prediction is worth trying where its plausible best
would extend the front: the model's uncertainty, not a fixed cadence of exploiting asks,
trades exploring against refining (a candidate the model is sure of scores its mean).

Hypervolume is what the search is judged by and what a scalar optimizer does not aim
for: told the macro-average, TPE and CMA-ES concentrate near its optimum and barely beat
random search on the front (bench/search.py). Pending trials enter the front with their
predicted mean losses, so concurrent asks do not all chase the same gap.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import norm

from proposer.pareto import hypervolume, non_dominated
from proposer.strategies.base import Weights
from proposer.surrogate import MAX_WEIGHTS, QuadraticSurrogate, fit_rows, n_linear_terms

# Reference point in normalized loss space (0: best seen, 1: worst seen), as the
# search's own reference point adds 10% of each objective's range.
REFERENCE = 1.1


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
        self._low = losses.min(axis=0)
        span = losses.max(axis=0) - self._low
        self._scale = np.where(span > 0, span, 1.0)
        points = self._normalize(losses)
        fit = fit_rows(len(x))
        self.surrogate = QuadraticSurrogate(x[fit], points[fit], on_simplex)
        front = (points[non_dominated(points)] if front is None
                 else self._normalize(np.array(front, dtype=float).reshape(-1, losses.shape[1])))
        extra = self.surrogate.predict(np.array(pending, dtype=float)) if pending else np.empty((0, losses.shape[1]))
        self.front = with_points(front, extra)

    def _normalize(self, losses: np.ndarray) -> np.ndarray:
        return (losses - self._low) / self._scale

    def scores(self, candidates: Sequence[Weights]) -> list[float]:
        """Hypervolume improvement of each candidate's lower confidence bound (negative: the
        bound is dominated, by that much)."""
        if self.surrogate is None:
            return [0.0] * len(candidates)
        x = np.array(candidates, dtype=float)
        mean, sd = self.surrogate.predict(x), self.surrogate.predict_sd(x)
        optimistic = mean - confidence_gain(mean.shape[1]) * sd
        return [improvement(p, self.front) for p in optimistic]

    def pick(self, candidates: Sequence[Weights]) -> int:
        """Index of the candidate to propose."""
        if self.surrogate is None or len(candidates) == 1:
            return 0
        scores = self.scores(candidates)
        return max(range(len(candidates)), key=lambda i: (scores[i], -i))


def with_points(front: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """The non-dominated rows of `front` (itself non-dominated) and `extra` together; cheaper than
    sorting them all again when the front is large (hundreds of points after 1000 trials)."""
    if not len(extra):
        return front
    extra = extra[non_dominated(extra)]

    def beaten(a: np.ndarray, by: np.ndarray) -> np.ndarray:
        return ((by[None] <= a[:, None]).all(axis=2) & (by[None] < a[:, None]).any(axis=2)).any(axis=1)

    return np.vstack([front[~beaten(front, extra)], extra[~beaten(extra, front)]])


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


def confidence_gain(n_objectives: int) -> float:
    """SMS-EGO's gain: the lower confidence bounds of all objectives hold together with
    probability 1/2, Phi(gain)^m = 1/2 (0.55 for 2 tasks, 0.82 for 3, 1.0 for 4)."""
    return float(norm.ppf(0.5 ** (1.0 / n_objectives)))
