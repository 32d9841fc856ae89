"""Probes aimed at the single checkpoints no trial dominates yet: a search's end game.

A search spends its trials near the best macro-average and along the front between
the checkpoints, and rarely visits a corner: there a checkpoint is best on its own
task, and every merge the search tried is worse on it. Yet a little of the right other
checkpoint often beats it on every task. Runs end noisy, and mixing in another run of
the same recipe averages part of that noise away (SmolLM2 pool: the 50/50 soup of two
prose runs beat both runs on every task, prose 2.522 against 2.571 and 2.573).

For a single s that no result dominates, the probe line runs from s towards its
nearest neighbour n: the other single whose scores (scaled by the singles' range on
each task) lie closest to s's, typically another run of the same recipe. On the simplex
the line is (1 - a) s + a n; under task arithmetic s + a n (s stays whole, n's task
vector is added). A merge's loss is quadratic in its weights to second order, so each
task's loss along the line is a parabola in a: fitted through the trials on the line
(s itself, n on the simplex, earlier probes), it predicts the a at which the merge
beats s by the most on the task where it beats s least. Until three points are known
the probes sit at a = 0.5, then 0.25.

Probing s stops when a trial dominates it, when the parabolas predict that no a beats
it on every task, or after MAX_PROBES points on its line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from proposer.pareto import dominates
from proposer.strategies.base import Weights

# None of these is tuned (bench/search.py runs no probes; they are sized by the geometry alone).
# Probes on one line at most (the single, and the neighbour single on the simplex, are not
# probes): on the simplex the first design point and two fitted ones.
MAX_PROBES = 3
FIRST_STEPS = (0.5, 0.25)
# Steps the fitted probe chooses from, and how close a new one may come to a known point.
STEP_GRID = np.linspace(0.02, 1.0, 50)
MIN_GAP = 0.03
# A trial is on a line when it is this close to it (weights are stored as floats).
TOLERANCE = 1e-9


@dataclass(frozen=True)
class ProbeLine:
    """Points start + a * direction, a in (0, 1], in strategy coordinates; a = 0 is the single."""

    start: np.ndarray
    direction: np.ndarray

    on_simplex: bool

    def is_end(self, step: float) -> bool:
        """The single (a = 0) or, on the simplex, the neighbour single (a = 1): not probes."""
        return abs(step) <= TOLERANCE or (self.on_simplex and abs(step - 1.0) <= TOLERANCE)

    def point(self, step: float) -> Weights:
        return tuple(float(v) for v in self.start + step * self.direction)

    def step_of(self, weights: Sequence[float]) -> float | None:
        """a where `weights` lie on the line (a in [0, 1]), else None."""
        offset = np.asarray(weights, dtype=float) - self.start
        step = float(offset @ self.direction / (self.direction @ self.direction))
        if not -TOLERANCE <= step <= 1.0 + TOLERANCE:
            return None
        if np.abs(offset - step * self.direction).max() > TOLERANCE:
            return None
        return step


def probe_line(single: int, neighbour: int, dim: int, on_simplex: bool) -> ProbeLine:
    start = np.zeros(dim)
    start[single] = 1.0
    direction = np.zeros(dim)
    direction[neighbour] = 1.0
    if on_simplex:
        direction[single] = -1.0
    return ProbeLine(start, direction, on_simplex)


def task_scale(singles: Mapping[int, Sequence[float]]) -> np.ndarray:
    """Per task, the range of the singles' losses (1 where they all agree)."""
    losses = np.array(list(singles.values()), dtype=float)
    span = losses.max(axis=0) - losses.min(axis=0)
    return np.where(span > 0, span, 1.0)


def nearest_neighbour(single: int, singles: Mapping[int, Sequence[float]]) -> int | None:
    """The other single whose loss vector, scaled per task by the singles' range, is closest."""
    others = [j for j in singles if j != single]
    if not others:
        return None
    scale = task_scale(singles)
    own = np.asarray(singles[single], dtype=float) / scale

    def distance(j: int) -> float:
        return float(np.linalg.norm(np.asarray(singles[j], dtype=float) / scale - own))

    return min(others, key=lambda j: (distance(j), j))


def next_step(
    line: ProbeLine,
    single_loss: Sequence[float],
    scale: Sequence[float],
    known: Sequence[tuple[float, Sequence[float]]],
    pending: Sequence[float],
) -> float | None:
    """The next a to probe on `line`, or None (waiting for a pending probe, or done).

    `known`: (a, loss vector) of the finished trials on the line, the single included;
    `pending`: a of the trials on the line still in flight.
    """
    if pending:
        return None  # the next step depends on the result in flight
    if len([a for a, _ in known if not line.is_end(a)]) >= MAX_PROBES:
        return None
    steps = sorted({round(a, 9) for a, _ in known})
    if len(steps) < 3:
        untried = [a for a in FIRST_STEPS if all(abs(a - b) > MIN_GAP for b in steps)]
        return untried[0] if untried else None
    margin = predicted_margin(known, single_loss, scale)
    candidates = [a for a in STEP_GRID if all(abs(a - b) >= MIN_GAP for b in steps)]
    if not candidates:
        return None
    values = margin(np.array(candidates))
    best = int(np.argmin(values))
    # Predicted to be worse than the single on some task wherever it goes: stop.
    return float(candidates[best]) if values[best] < 0 else None


def predicted_margin(known, single_loss, scale):
    """a -> max over tasks of (fitted loss - single's loss) / scale: < 0 predicts dominance."""
    steps = np.array([a for a, _ in known], dtype=float)
    losses = np.array([loss for _, loss in known], dtype=float)
    # One least-squares parabola per task (exact through three points).
    coefficients = np.polyfit(steps, losses, 2)
    reference = np.asarray(single_loss, dtype=float)
    scale = np.asarray(scale, dtype=float)

    def margin(a: np.ndarray) -> np.ndarray:
        fitted = np.vander(a, 3) @ coefficients  # rows: steps, columns: tasks
        return ((fitted - reference) / scale).max(axis=1)

    return margin


def dominance_probe(
    singles: Mapping[int, Sequence[float]],
    front: Sequence[Sequence[float]],
    observed: Sequence[tuple[Weights, Sequence[float]]],
    pending: Sequence[Weights],
    dim: int,
    on_simplex: bool,
) -> tuple[int, Weights] | None:
    """(searched index of the single aimed at, strategy weights) of the next probe, or None.

    `singles`: loss vector per searched index of each single checkpoint with a result;
    `front`: the loss vectors of the non-dominated results; `observed`: (weights, loss
    vector) of every finished ok trial; `pending`: weights of the trials in flight.
    Singles are taken in order; the first one that is undominated and has a step to
    probe gets it.
    """
    if len(singles) < 2:
        return None
    scale = task_scale(singles)
    for single, loss in singles.items():
        if any(dominates(point, loss) for point in front):
            continue
        neighbour = nearest_neighbour(single, singles)
        if neighbour is None:
            continue
        line = probe_line(single, neighbour, dim, on_simplex)
        known = [(a, point) for weights, point in observed if (a := line.step_of(weights)) is not None]
        waiting = [a for weights in pending if (a := line.step_of(weights)) is not None]
        step = next_step(line, loss, scale, known, waiting)
        if step is not None:
            return single, line.point(step)
    return None
