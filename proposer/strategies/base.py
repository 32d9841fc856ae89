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
from typing import ClassVar, Sequence

import numpy as np

Weights = tuple[float, ...]


def derived_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed for (search seed, keys...), decorrelated from its neighbours."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


class Strategy(ABC):
    """Ask/tell in two explicit steps: `sample` draws candidates for a trial without changing
    anything, `propose` says which one the trial evaluates (the strategy counts it as pending
    from then on), `tell` gives its loss. `proposed` and `told` hold what it was given."""

    name: ClassVar[str]
    # Candidates per pre-screened ask unless the search sets algorithm.candidates
    # (1: the strategy offers no choice).
    default_candidates: ClassVar[int] = 1
    # True: the strategy uses the surrogate itself (CMA-ES ranks its population with it), so
    # the driver does not pre-screen its candidates.
    ranks_population: ClassVar[bool] = False

    def __init__(self, n_weights: int, seed: int, normalize: bool, high: float = 1.0, candidates: int | None = None,
                 surrogate: bool = False, blocks: int = 1):
        if blocks < 1 or n_weights % blocks:
            raise ValueError(f"{n_weights} weights do not split into {blocks} blocks")
        if n_weights // blocks < (2 if normalize else 1):
            raise ValueError(f"nothing to search with {n_weights // blocks} weight(s)")
        if normalize and high != 1.0:
            raise ValueError("weights on the simplex have no upper bound to set")
        if not 1.0 <= high <= 4.0:  # the singles (weight 1) must lie in the searched box
            raise ValueError(f"the upper bound of the weights must be in [1, 4], got {high}")
        self.n_weights = n_weights
        # Weights per layer group (merge.weights): `blocks` blocks of `block` weights, group-major.
        # On the simplex each block is on its own simplex: the strategies map coordinates block by block.
        self.blocks = blocks
        self.block = n_weights // blocks
        self.seed = seed
        # True: weights on the simplex. False: each weight in [0, high] (task arithmetic).
        # The strategies search the weights themselves, not a rescaling of them, so the
        # weights stored with a proposal rebuild a strategy exactly after a restart.
        self.normalize = normalize
        self.high = high
        self.n_candidates = candidates or self.default_candidates
        self.surrogate = surrogate  # the search's algorithm.surrogate (see ranks_population)
        self.proposed: dict[int, Weights] = {}  # trial number -> the weights it evaluates
        self.told: dict[int, tuple[Weights, float | None]] = {}  # trial number -> (weights, loss)

    def per_block(self, coords: Sequence[float], to_weights) -> Weights:
        """Weights of coordinates made of `blocks` equal blocks, each mapped by `to_weights`."""
        coords = list(coords)
        size = len(coords) // self.blocks
        return tuple(float(v) for b in range(self.blocks) for v in to_weights(coords[b * size:(b + 1) * size]))

    @abstractmethod
    def sample(self, number: int, n: int = 1) -> list[Weights]:
        """Up to n candidates for trial `number`, the strategy's own favourite first; n = 1 is
        the plain ask. Changes nothing; depends only on what was proposed and told so far."""

    def propose(self, number: int, weights: Weights) -> None:
        """Trial `number` evaluates `weights`, one of `sample(number, ...)`'s candidates."""
        self.proposed[number] = weights
        self._proposed(number, weights)

    def _proposed(self, number: int, weights: Weights) -> None:
        """What a strategy with state does with a proposal (default: nothing)."""

    def ask(self, numbers: Sequence[int]) -> list[Weights]:
        """Sample and propose the favourite, per number; each ask sees the earlier ones as pending."""
        chosen = []
        for number in numbers:
            [weights] = self.sample(number, 1)
            self.propose(number, weights)
            chosen.append(weights)
        return chosen

    def tell(self, number: int, weights: Weights, loss: float | None) -> None:
        """Loss of a trial (None: it failed). May concern a trial this strategy never proposed."""
        self.told[number] = (weights, loss)
        self._tell(number, weights, loss)

    @abstractmethod
    def _tell(self, number: int, weights: Weights, loss: float | None) -> None:
        """What the strategy learns from a result."""

    def restore(
        self,
        asked: Sequence[tuple[int, Weights]],
        told: Sequence[tuple[int, Weights, float | None]],
    ) -> None:
        """Rebuild the state of an earlier incarnation of this strategy.

        `asked`: what it proposed, by trial number; `told`: every result, in the
        order it was told. The stored weights are taken as given: a restarted
        proposer must model the points that were really evaluated. By default only
        the tells matter, as `sample` keeps no state.
        """
        self.proposed.update(asked)
        for number, weights, loss in told:
            self.tell(number, weights, loss)
