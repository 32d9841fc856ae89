"""The ask/tell interface every search strategy implements.

A strategy proposes raw weight vectors for trial numbers and learns from losses
(lower is better). Every random draw is seeded from (search seed, trial number),
so what `ask(n)` returns depends only on what the strategy has been told and which
trials are pending, never on the order of calls that led there. That is what lets
a restarted proposer rebuild a strategy from the stored history (`restore`)
instead of pickling it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, ClassVar, Sequence

import numpy as np

Weights = tuple[float, ...]
# Chooses one of a strategy's candidates for a trial (see proposer.prescreen): an index.
Pick = Callable[[Sequence[Weights]], int]


def derived_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed for (search seed, keys...), decorrelated from its neighbours."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


class Strategy(ABC):
    name: ClassVar[str]
    # Candidates drawn per ask when a `pick` is given (1: the strategy never offers a choice).
    n_candidates: ClassVar[int] = 1

    def __init__(self, n_weights: int, seed: int, normalize: bool, high: float = 1.0):
        if n_weights < (2 if normalize else 1):
            raise ValueError(f"nothing to search with {n_weights} weight(s)")
        if normalize and high != 1.0:
            raise ValueError("weights on the simplex have no upper bound to set")
        if not 1.0 <= high <= 4.0:  # the singles (weight 1) must lie in the searched box
            raise ValueError(f"the upper bound of the weights must be in [1, 4], got {high}")
        self.n_weights = n_weights
        self.seed = seed
        # True: weights on the simplex. False: each weight in [0, high] (task arithmetic).
        # The strategies search the weights themselves, not a rescaling of them, so the
        # weights stored with a proposal rebuild a strategy exactly after a restart.
        self.normalize = normalize
        self.high = high

    @abstractmethod
    def ask(self, numbers: Sequence[int], pick: Pick | None = None) -> list[Weights]:
        """Weights for these trial numbers; each ask sees the earlier ones as pending.

        With `pick`, a strategy that models where good points are draws `n_candidates`
        from its model per trial, its own favourite first, and proposes the one `pick`
        chooses. What it proposes still depends only on its history and on `pick`.
        """

    @abstractmethod
    def tell(self, number: int, weights: Weights, loss: float | None) -> None:
        """Loss of a trial (None: it failed). May concern a trial this strategy never asked."""

    def relabel(self, losses: dict[int, float]) -> bool:
        """Replace the losses of told trials (rescalarization). False: not supported."""
        return False

    def restore(
        self,
        asked: Sequence[tuple[int, Weights]],
        told: Sequence[tuple[int, Weights, float | None]],
    ) -> None:
        """Rebuild the state of an earlier incarnation of this strategy.

        `asked`: what it proposed, by trial number; `told`: every result, in the
        order it was told. The stored weights are taken as given: a restarted
        proposer must model the points that were really evaluated. By default only
        the tells matter, as `ask` keeps no state.
        """
        for number, weights, loss in told:
            self.tell(number, weights, loss)
