"""Turning per-task scores into one loss to minimize.

Every objective is first put in loss form (direction.sign * score, lower is
better). The search minimizes the mean of those normalized by the single checkpoints'
spread (proposer.normalize), the paper's macro-average on one scale for every unit.
`Scalarizer` puts objectives on a common scale (the ideal..nadir range of the
baselines) for the augmented Chebyshev scalarization ParEGO draws a random weight
vector for on every ask, which spreads the search along the Pareto front.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from contracts import Objective

# Augmentation of the Chebyshev scalarization (ParEGO's value): keeps weakly
# dominated points from scoring as well as the points that dominate them.
RHO = 0.05


def loss_vector(scores: Mapping[str, float], objectives: Sequence[Objective]) -> list[float]:
    missing = [o.name for o in objectives if o.name not in scores]
    if missing:
        raise ValueError(f"scores lack objective(s): {', '.join(missing)}")
    return [o.direction.sign * scores[o.name] for o in objectives]


class Scalarizer:
    """Scales each objective to [0, 1] over the baselines seen (identity before any)."""

    def __init__(self, objectives: Sequence[Objective], baselines: Iterable[Mapping[str, float]] = ()):
        self.objectives = list(objectives)
        self._ideal: list[float] | None = None
        self._nadir: list[float] | None = None
        for scores in baselines:
            self.observe(scores)

    def observe(self, scores: Mapping[str, float]) -> None:
        losses = loss_vector(scores, self.objectives)
        if self._ideal is None or self._nadir is None:
            self._ideal, self._nadir = list(losses), list(losses)
            return
        self._ideal = [min(a, b) for a, b in zip(self._ideal, losses)]
        self._nadir = [max(a, b) for a, b in zip(self._nadir, losses)]

    def normalize(self, scores: Mapping[str, float]) -> list[float]:
        losses = loss_vector(scores, self.objectives)
        if self._ideal is None or self._nadir is None:
            return losses
        # An objective on which every baseline scored the same is shifted, not scaled.
        return [(v - lo) / ((hi - lo) or 1.0) for v, lo, hi in zip(losses, self._ideal, self._nadir)]

    def mean(self, scores: Mapping[str, float]) -> float:
        values = self.normalize(scores)
        return sum(values) / len(values)

    def chebyshev(self, scores: Mapping[str, float], lam: Sequence[float]) -> float:
        """Augmented Tchebycheff: max_j lam_j f_j + RHO * sum_j lam_j f_j (f normalized)."""
        if len(lam) != len(self.objectives):
            raise ValueError(f"{len(lam)} Chebyshev weights for {len(self.objectives)} objectives")
        weighted = [w * f for w, f in zip(lam, self.normalize(scores))]
        return max(weighted) + RHO * sum(weighted)
