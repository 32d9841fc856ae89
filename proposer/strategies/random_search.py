"""Random search: the baseline every model-based strategy has to beat."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from proposer.strategies.base import Pick, Strategy, Weights, derived_seed


class RandomStrategy(Strategy):
    """Dirichlet(1) (uniform on the simplex), or uniform in [0, high]^n when unnormalized.

    Each trial number gets its own seeded generator, so proposals ignore both the
    tells and the order of asks. Never pre-screened (`pick` is ignored): it is the
    reference the model-based strategies are measured against.
    """

    name = "random"

    def ask(self, numbers: Sequence[int], pick: Pick | None = None) -> list[Weights]:
        return [self._draw(number) for number in numbers]

    def _draw(self, number: int) -> Weights:
        rng = np.random.default_rng(derived_seed(self.seed, number))
        if self.normalize:
            return tuple(float(v) for v in rng.dirichlet(np.ones(self.n_weights)))
        return tuple(float(v) for v in rng.uniform(0.0, self.high, self.n_weights))

    def tell(self, number: int, weights: Weights, loss: float | None) -> None:
        pass
