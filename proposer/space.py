"""Pool weight vectors vs the coordinates a strategy searches."""

from __future__ import annotations

from typing import Sequence

from contracts import SearchSpec
from proposer.strategies.base import Weights


class WeightSpace:
    """A proposal carries one weight per pool checkpoint. In task arithmetic
    (merge.base set) the base's own task vector is zero, so its weight does
    nothing: it is left out of the search and is 0 in every proposal."""

    def __init__(self, spec: SearchSpec):
        self.names = spec.pool.names
        self.normalize = spec.merge.normalize
        self.base = spec.merge.base
        # Pool indices of the searched checkpoints, in pool order.
        self.searched = [i for i, name in enumerate(self.names) if name != self.base]

    @property
    def dim(self) -> int:
        return len(self.searched)

    def to_pool(self, x: Sequence[float]) -> Weights:
        weights = [0.0] * len(self.names)
        for i, value in zip(self.searched, x, strict=True):
            weights[i] = float(value)
        return tuple(weights)

    def to_strategy(self, weights: Sequence[float]) -> Weights:
        return tuple(weights[i] for i in self.searched)
