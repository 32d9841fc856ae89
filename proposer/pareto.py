"""The non-dominated set of trial results and its hypervolume, in loss form.

Everything here minimizes: a result's point is its loss vector (direction.sign *
score per objective, see `scalarize`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from contracts import Objective, TrialResult, TrialStatus
from proposer.scalarize import loss_vector

Point = Sequence[float]


def dominates(a: Point, b: Point) -> bool:
    """a is no worse than b everywhere and better somewhere."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Mask of the rows of `points` (n x objectives) that no other row dominates."""
    points = np.asarray(points, dtype=float)
    mask = np.zeros(len(points), dtype=bool)
    front: list[int] = []
    # A point can only be dominated by one with a smaller sum, so in order of the sum each
    # point needs checking against the front found so far only.
    for i in np.argsort(points.sum(axis=1), kind="stable"):
        if front:
            members = points[front]
            if ((members <= points[i]).all(axis=1) & (members < points[i]).any(axis=1)).any():
                continue
        front.append(int(i))
    mask[front] = True
    return mask


class ParetoArchive:
    """Keeps the ok results no other result dominates.

    Results with identical loss vectors do not dominate each other, so both stay
    on the front; hypervolume counts such a point once.
    """

    def __init__(self, objectives: Sequence[Objective]):
        self.objectives = list(objectives)
        self._front: list[tuple[TrialResult, list[float]]] = []

    def add(self, result: TrialResult) -> bool:
        """True if the result joined the front."""
        if result.status is not TrialStatus.ok:
            return False
        point = loss_vector(result.scores, self.objectives)
        if any(r.trial_id == result.trial_id or dominates(p, point) for r, p in self._front):
            return False
        self._front = [(r, p) for r, p in self._front if not dominates(point, p)]
        self._front.append((result, point))
        return True

    @property
    def front(self) -> list[TrialResult]:
        return [r for r, _ in self._front]

    def hypervolume(self, reference: Sequence[float], scale=None) -> float:
        """Of the front, in loss form, or through `scale(scores)` (e.g. Normalization.losses)."""
        points = [p for _, p in self._front] if scale is None else [scale(r.scores) for r, _ in self._front]
        return hypervolume(points, reference)


def hypervolume(points: Sequence[Point], reference: Sequence[float]) -> float:
    """Exact volume dominated by the points and bounded by the reference point.

    Points not strictly better than the reference in every objective add nothing.
    Two objectives: a sweep. More: slices along the last objective, each an exact
    lower-dimensional hypervolume (fine for fronts of a few hundred points).
    """
    if len(reference) == 0:
        raise ValueError("a reference point needs at least one objective")
    inside = {tuple(p) for p in points if all(x < r for x, r in zip(p, reference))}
    return _volume(sorted(inside), tuple(reference)) if inside else 0.0


def _volume(points: list[tuple[float, ...]], reference: tuple[float, ...]) -> float:
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in points)
    if len(reference) == 2:
        volume, floor = 0.0, reference[1]
        for x, y in sorted(points):
            if y < floor:
                volume += (reference[0] - x) * (floor - y)
                floor = y
        return volume
    by_last = sorted(points, key=lambda p: p[-1])
    volume = 0.0
    for i, point in enumerate(by_last):
        top = by_last[i + 1][-1] if i + 1 < len(by_last) else reference[-1]
        if top > point[-1]:
            volume += (top - point[-1]) * _volume([p[:-1] for p in by_last[: i + 1]], reference[:-1])
    return volume
