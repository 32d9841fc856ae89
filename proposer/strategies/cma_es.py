"""CMA-ES (the `cmaes` package) made asynchronous: workers never wait for a generation.

`CMA.ask()` may be called any number of times; `CMA.tell()` takes exactly one
population. So every ask samples the current distribution and remembers its
generation, and the first `population_size` results of that generation to come
back are told; later ones, failures and points this strategy never asked (the
baselines) are ignored. The search starts from the uniform soup.

Each sample reseeds the sampler with (seed, trial number, candidate), so a sample
depends only on the distribution and those numbers. That lets `restore` recover which
generation each stored ask belonged to: an ask that none of the current
distribution's candidates reproduces was made after that generation had been told.
`sample(number, n)` (pre-screening, see proposer.prescreen) draws n samples, the first
the one a plain ask makes; CMA-ES is then told the proposed samples only.

Coordinates. On the simplex: additive log-ratios z in R^(n-1), weights softmax([z, 0]),
starting at z = 0 (the uniform soup). Every z is a distinct merge, so no step is wasted
along a direction that changes nothing (x / sum(x) of x in [0, 1]^n has one: the scale);
on the synthetic benchmark this took CMA-ES from 0.81x to ~1.05x random's hypervolume
gain and to the best macro-average of the three strategies. Unnormalized: x in [0, high]^n
(bounds repair the samples), starting at 1/n each with a step of high/(2n).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from cmaes import CMA

from proposer.strategies import simplex
from proposer.strategies.base import Strategy, Weights, derived_seed


# On the simplex: step size and bounds of the log-ratio coordinates (a weight ratio of e^8
# ~ 3000 is as lopsided as a merge needs to get).
SIGMA = 1.0
LOGIT_BOUND = 8.0


class CMAESStrategy(Strategy):
    name = "cmaes"
    # Candidates per pre-screened ask. CMA-ES's distribution narrows onto the macro-average's
    # optimum, so it takes more draws to find points that extend the front. Tuned on
    # bench/search.py's tuning seeds 0-4, demo pool, 32/64 trials: 1.16x/1.20x random's
    # hypervolume gain with 16, 1.23x/1.25x with 64. Drawing and scoring 64 costs a few ms.
    default_candidates = 64

    def __init__(self, n_weights: int, seed: int, normalize: bool, high: float = 1.0, candidates: int | None = None):
        super().__init__(n_weights, seed, normalize, high, candidates)
        if normalize:
            dim = n_weights - 1
            self._cma = CMA(mean=np.zeros(dim), sigma=SIGMA, bounds=np.tile([-LOGIT_BOUND, LOGIT_BOUND], (dim, 1)), seed=seed)
        else:
            start = 1.0 / n_weights  # the uniform soup; the step scales with the box
            self._cma = CMA(mean=np.full(n_weights, start), sigma=high * start / 2, bounds=np.tile([0.0, high], (n_weights, 1)), seed=seed)
        self._samples: dict[int, np.ndarray] = {}
        self._generation_of: dict[int, int] = {}
        self._returned: list[tuple[np.ndarray, float]] = []  # this generation's results so far
        # The last `sample` call's draws (trial number, generation, weights -> sample), so
        # proposing one of them need not draw again.
        self._drawn: tuple[int, int, dict[Weights, np.ndarray]] = (-1, -1, {})

    @property
    def generation(self) -> int:
        return self._cma.generation

    @property
    def population_size(self) -> int:
        return self._cma.population_size

    def sample(self, number: int, n: int = 1) -> list[Weights]:
        samples = [self._sample(number, j) for j in range(n)]
        weights = [self._weights(x) for x in samples]
        self._drawn = (number, self.generation, dict(zip(weights, samples)))
        return weights

    def _proposed(self, number: int, weights: Weights) -> None:
        drawn_number, generation, samples = self._drawn
        x = samples.get(weights) if (drawn_number, generation) == (number, self.generation) else None
        x = self._find(number, weights) if x is None else x
        if x is None:
            raise ValueError(f"weights proposed for trial {number} are not one of its samples")
        self._remember(number, x)

    def _tell(self, number: int, weights: Weights, loss: float | None) -> None:
        if loss is None or self._generation_of.get(number) != self.generation:
            return
        self._returned.append((self._samples[number], float(loss)))
        if len(self._returned) == self.population_size:
            self._cma.tell(self._returned)
            self._returned = []

    def restore(self, asked: Sequence[tuple[int, Weights]], told: Sequence[tuple[int, Weights, float | None]]) -> None:
        for number, weights in asked:
            x = self._find(number, weights)
            if x is None:
                # Made after its generation was told: close the current generation.
                # Tells of other generations are ignored, so replaying them all is safe.
                super().restore(asked, told)
                x = self._find(number, weights)
                if x is None:
                    raise ValueError(
                        f"stored proposal {number} is not a CMA-ES sample of this search "
                        "(different seed or strategy version)"
                    )
            self._remember(number, x)
        super().restore(asked, told)

    def _find(self, number: int, weights: Weights) -> np.ndarray | None:
        """The candidate of the current distribution that `weights` came from, if any
        (which candidate was picked is not stored: it is recognized)."""
        for j in range(self.n_candidates):
            x = self._sample(number, j)
            if self._same(x, weights):
                return x
        return None

    def _sample(self, number: int, candidate: int = 0) -> np.ndarray:
        # Candidate 0 is the sample an unscreened ask makes.
        keys = (number, candidate) if candidate else (number,)
        self._cma.reseed_rng(derived_seed(self.seed, *keys))
        return self._cma.ask()

    def _remember(self, number: int, x: np.ndarray) -> None:
        self._samples[number] = x
        self._generation_of[number] = self.generation

    def _same(self, x: np.ndarray, weights: Weights) -> bool:
        # A tolerance, not equality: another BLAS may round the eigendecomposition differently.
        return bool(np.allclose(self._weights(x), weights, rtol=0.0, atol=1e-9))

    def _weights(self, x: np.ndarray) -> Weights:
        return simplex.from_logits(x) if self.normalize else tuple(float(v) for v in x)
