"""Random search: the baseline every model-based strategy has to beat."""

from __future__ import annotations

import numpy as np

from proposer.strategies.base import Strategy, Weights, derived_seed


class RandomStrategy(Strategy):
    """Dirichlet(1) (uniform on the simplex; per layer group, one per block), or uniform in
    [0, high]^n when unnormalized.

    Each (trial number, candidate) gets its own seeded generator, so proposals ignore
    both the tells and the order of asks. Not pre-screened unless the search sets
    algorithm.candidates (random search is the reference the others are measured against;
    random candidates with the surrogate is the benchmark's "random + surrogate" peer).
    """

    name = "random"

    def sample(self, number: int, n: int = 1) -> list[Weights]:
        return [self._draw(number, j) for j in range(n)]

    def _draw(self, number: int, candidate: int) -> Weights:
        keys = (number, candidate) if candidate else (number,)  # candidate 0: the plain ask
        rng = np.random.default_rng(derived_seed(self.seed, *keys))
        if self.normalize:
            return tuple(float(v) for _ in range(self.blocks) for v in rng.dirichlet(np.ones(self.block)))
        return tuple(float(v) for v in rng.uniform(0.0, self.high, self.n_weights))

    def _tell(self, number: int, weights: Weights, loss: float | None) -> None:
        pass
