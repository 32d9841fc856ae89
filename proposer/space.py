"""Pool weight vectors vs the coordinates a strategy searches."""

from __future__ import annotations

from typing import Sequence

from contracts import SearchSpec
from proposer.strategies.base import Weights


class WeightSpace:
    """A proposal carries one weight per pool checkpoint, or per layer group one weight per
    checkpoint (merge.weights per layer_groups: K x N, group-major). In task arithmetic
    (merge.base set) the base's own task vector is zero, so its weight does nothing: it is
    left out of the search and is 0 in every proposal (in every group).

    Strategy coordinates are `groups` blocks of `block` searched weights, group-major too.

    The surrogate (proposer.surrogate) reads them as one Scheffe quadratic: with each block on
    its own simplex that is the full quadratic on the product of the simplices (an intercept and
    the squares are combinations of each block's own terms; the K - 1 linear directions that
    repeat the intercept are dropped by its rank-revealing fit). Its terms outnumber the trials
    sooner (4 groups x 8 weights: 528); the prior keeps the fit defined. Above MAX_WEIGHTS
    (32: 4 groups of 17 checkpoints are 68) nothing is fitted: a pre-screened strategy proposes
    its own favourite candidate, and CMA-ES runs without its lq model."""

    def __init__(self, spec: SearchSpec):
        self.names = spec.pool.names
        self.normalize = spec.merge.normalize
        self.base = spec.merge.base
        self.groups = spec.merge.weights.n_groups
        # Pool indices of the searched checkpoints, in pool order.
        self.searched = [i for i, name in enumerate(self.names) if name != self.base]

    @property
    def block(self) -> int:
        """Searched weights per group."""
        return len(self.searched)

    @property
    def dim(self) -> int:
        return self.block * self.groups

    def to_pool(self, x: Sequence[float]) -> Weights:
        if len(x) != self.dim:
            raise ValueError(f"{len(x)} strategy coordinates for {self.groups} group(s) x {self.block} weights")
        n = len(self.names)
        weights = [0.0] * (n * self.groups)
        for g in range(self.groups):
            for i, value in zip(self.searched, x[g * self.block:(g + 1) * self.block], strict=True):
                weights[g * n + i] = float(value)
        return tuple(weights)

    def to_strategy(self, weights: Sequence[float]) -> Weights:
        n = len(self.names)
        return tuple(weights[g * n + i] for g in range(self.groups) for i in self.searched)

    def everywhere(self, x: Sequence[float]) -> Weights:
        """Pool weights of one group's strategy coordinates used in every group (a merge of the
        whole model with these weights: what the baselines, greedy soup and probes propose)."""
        return self.to_pool(tuple(x) * self.groups)

    def common(self, x: Sequence[float]) -> Weights | None:
        """One group's coordinates when every group has the same (None: they differ)."""
        first = tuple(x[: self.block])
        same = all(tuple(x[g * self.block:(g + 1) * self.block]) == first for g in range(1, self.groups))
        return first if same else None
