"""CMA-ES (the `cmaes` package) made asynchronous, with the surrogate used as lq-CMA-ES does.

Generations. Generation g's population is lambda samples of the current distribution,
sample j drawn with the sampler reseeded from (seed, g, j), so a population depends only
on the distribution and those numbers. Each ask proposes a member not yet proposed; once
all lambda are out and the generation is still open, asks draw extra samples (j >= lambda)
from the same distribution, so workers never wait for a generation. The generation closes
when lambda of its samples have returned: CMA-ES is told those samples and their losses.
Late results, failures and points this strategy never asked (the baselines) are not told
to CMA-ES (with the surrogate they are still data of the model).

With the surrogate (Hansen 2019, "A global surrogate assisted CMA-ES", GECCO; pycma's
`cma.fitness_models.SurrogatePopulation`): a quadratic model of the loss CMA-ES is told
(`proposer.surrogate`, fitted to every result told so far) ranks the population, and asks
propose the members in that order. After each returned member the rank test runs, once
`required` members are back: Kendall's tau between the true losses of the last
max(15, min(1.2 e, 0.75 lambda)) results (e: members back) and the model's predictions of
them. At tau >= 0.85 the generation closes early and CMA-ES is told every member of the
population it sampled, each with the model's value shifted so the best equals the best
true loss seen in the generation (pycma's offset); otherwise `required` grows by half,
rounded up. Two changes for an asynchronous pool and this model: the predictions the test
reads are leave-one-out ones (the ridge has more coefficients than pycma's staged model,
so its in-sample fit says little), and members keep being proposed while results are out.
What CMA-ES is told is always consistent with what it sampled: the whole population, or
lambda samples of the generation with their true losses.

Restarts. `restore` replays the stored tells in order, once; when a generation begins it
recognizes, in trial order, the stored proposals that are members of it (which member each
was is not stored: it is recognized), so the model's data, the rank tests and the closes
happen as they did live.

Coordinates. On the simplex: isometric log-ratios z in R^(n-1) (`simplex.from_ilr`), no
checkpoint favoured, starting at z = 0 (the uniform soup) with sigma = pi / sqrt(6): the
uniform distribution on the simplex (Dirichlet(1)) has isometric log-ratio covariance
trigamma(1) I = (pi^2 / 6) I, so the first generation spreads like random search does: the
share of initial samples with > 0.01 on every checkpoint is close to Dirichlet(1)'s, where
the additive log-ratios softmax([z, 0]) with sigma 1 put it at 0.83 for 9 checkpoints and
favoured the last one (bench/search_design.py; docs/results/search.md). Unnormalized:
x in [0, high]^n (bounds repair the samples), starting at 1/n each with a step of high/(2n).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from cmaes import CMA
from scipy.stats import kendalltau

from proposer.strategies import simplex
from proposer.strategies.base import Strategy, Weights, derived_seed
from proposer.surrogate import MAX_WEIGHTS, QuadraticSurrogate, fit_rows, n_linear_terms

# On the simplex: the step size matching Dirichlet(1)'s spread (see the module docstring),
# and bounds of the coordinates (a log-ratio contrast of e^8 ~ 3000 is as lopsided as a merge needs).
SIGMA = math.pi / math.sqrt(6.0)
ILR_BOUND = 8.0
# lq-CMA-ES's rank test (pycma's SurrogatePopulationSettings, not tuned here).
TAU_THRESHOLD = 0.85


class CMAESStrategy(Strategy):
    name = "cmaes"
    ranks_population = True  # uses the surrogate itself: the driver does not pre-screen it

    def __init__(self, n_weights: int, seed: int, normalize: bool, high: float = 1.0, candidates: int | None = None,
                 surrogate: bool = False, blocks: int = 1):
        super().__init__(n_weights, seed, normalize, high, candidates, surrogate, blocks)
        if normalize:
            dim = n_weights - blocks  # n - 1 isometric log-ratios per block (layer group)
            self._cma = CMA(mean=np.zeros(dim), sigma=SIGMA, bounds=np.tile([-ILR_BOUND, ILR_BOUND], (dim, 1)), seed=seed)
        else:
            start = 1.0 / self.block  # the uniform soup; the step scales with the box
            self._cma = CMA(mean=np.full(n_weights, start), sigma=high * start / 2,
                            bounds=np.tile([0.0, high], (n_weights, 1)), seed=seed)
        self._use_model = surrogate and n_weights <= MAX_WEIGHTS
        self._members: dict[int, np.ndarray] = {}  # this generation's samples drawn so far, by index j
        self._taken: set[int] = set()  # indices proposed in this generation
        self._member_of: dict[int, tuple[int, int]] = {}  # trial number -> (generation, j)
        self._returned: dict[int, float] = {}  # j -> loss, this generation's results so far
        self._data: list[tuple[Weights, float]] = []  # every ok result told, in tell order
        self._model: tuple[int, QuadraticSurrogate | None] = (-1, None)  # (data it was fitted to, model)
        # Members back before the next rank test (None: pycma's first count, from the data at the test).
        self._required: int | None = None
        self.tau_history: list[tuple[int, float]] = []  # (generation, tau) of every rank test
        self._sampled: int | None = None  # the member the last `sample` offered

    @property
    def generation(self) -> int:
        return self._cma.generation

    @property
    def population_size(self) -> int:
        return self._cma.population_size

    # -- asking -------------------------------------------------------------------

    def sample(self, number: int, n: int = 1) -> list[Weights]:
        """The next member to propose (CMA-ES offers no choice: its population is its own)."""
        self._sampled = self._next_index()
        return [self._weights(self._member(self._sampled))]

    def _proposed(self, number: int, weights: Weights) -> None:
        j = self._index_of(weights, first=self._sampled)
        if j is None:
            raise ValueError(f"weights proposed for trial {number} are not a sample of generation {self.generation}")
        self._take(number, j)

    def _next_index(self) -> int:
        free = [j for j in range(self.population_size) if j not in self._taken]
        if not free:  # the whole population is out: an extra sample, the next index
            return max(self._taken) + 1
        model = self._fitted()
        if model is None:
            return free[0]
        predicted = model.predict(np.array([self._weights(self._member(j)) for j in free]))[:, 0]
        return free[int(np.argmin(predicted))]

    def _member(self, j: int) -> np.ndarray:
        if j not in self._members:
            self._cma.reseed_rng(derived_seed(self.seed, self.generation, j))
            self._members[j] = self._cma.ask()
        return self._members[j]

    def _index_of(self, weights: Weights, first: int | None = None) -> int | None:
        """Which member of this generation `weights` are (`first`, the population, the next extra)."""
        extra = max(self._taken, default=self.population_size - 1) + 1
        for j in [first, *range(self.population_size), max(extra, self.population_size)]:
            if j is not None and np.allclose(self._weights(self._member(j)), weights, rtol=0.0, atol=1e-9):
                return j
        return None

    def _take(self, number: int, j: int) -> None:
        self._taken.add(j)
        self._member_of[number] = (self.generation, j)

    # -- telling ------------------------------------------------------------------

    def _tell(self, number: int, weights: Weights, loss: float | None) -> None:
        if loss is None:
            return
        self._data.append((tuple(weights), float(loss)))
        if self._member_of.get(number, (None,))[0] != self.generation:
            return  # another generation's, or not this strategy's
        self._returned[self._member_of[number][1]] = float(loss)
        if len(self._returned) == self.population_size:
            self._close([(self._members[j], f) for j, f in self._returned.items()])
        elif self._use_model and len(self._returned) >= (self._required or self._first_required()):
            self._rank_test()

    def _rank_test(self) -> None:
        model = self._fitted()
        n = min(len(self._data), max(15, min(int(1.2 * len(self._returned)), int(0.75 * self.population_size))))
        tau = 0.0
        if model is not None and n >= 3:
            value = kendalltau(model.loo_predictions[-n:, 0], [f for _, f in self._data[-n:]]).statistic
            tau = float(value) if np.isfinite(value) else 0.0
        self.tau_history.append((self.generation, tau))
        if tau < TAU_THRESHOLD:
            required = self._required or self._first_required()
            self._required = required + math.ceil(required / 2)
            return
        population = [self._member(j) for j in range(self.population_size)]
        predicted = model.predict(np.array([self._weights(x) for x in population]))[:, 0]
        shifted = predicted - predicted.min() + min(self._returned.values())
        self._close(list(zip(population, shifted.tolist())))

    def _close(self, solutions: list[tuple[np.ndarray, float]]) -> None:
        self._cma.tell(solutions)
        self._members, self._taken, self._returned = {}, set(), {}
        self._required = None

    def _first_required(self) -> int:
        # pycma: evaluate at least 2% of the population, and enough for a model of 3 / 0.75 points.
        # (pycma counts when the population is ranked; here when its first result is back.)
        return int(1 + max(0.02 * self.population_size, 4 - len(self._data)))

    def _fitted(self) -> QuadraticSurrogate | None:
        """The model of every ok result told so far (None without the surrogate or with too few)."""
        if not self._use_model:
            return None
        if self._model[0] != len(self._data):
            model = None
            if len(self._data) >= n_linear_terms(self.n_weights, self.normalize) + 2:
                rows = [self._data[i] for i in fit_rows(len(self._data))]
                x = np.array([w for w, _ in rows])
                model = QuadraticSurrogate(x, np.array([[f] for _, f in rows]), self.normalize)
            self._model = (len(self._data), model)
        return self._model[1]

    # -- restarts -----------------------------------------------------------------

    def restore(self, asked: Sequence[tuple[int, Weights]], told: Sequence[tuple[int, Weights, float | None]]) -> None:
        self.proposed.update(asked)
        waiting = sorted(asked)

        def recognize() -> None:
            # This generation's proposals come next in trial order; the first that is no member
            # of it was made in a later generation.
            while waiting and (j := self._index_of(waiting[0][1])) is not None:
                self._take(waiting.pop(0)[0], j)

        recognize()
        for number, weights, loss in told:
            generation = self.generation
            self.tell(number, weights, loss)
            if self.generation != generation:
                recognize()
        if waiting:
            raise ValueError(f"stored proposal {waiting[0][0]} is not a CMA-ES sample of this search "
                             "(different seed or strategy version)")

    def _weights(self, x: np.ndarray) -> Weights:
        return self.per_block(x, simplex.from_ilr) if self.normalize else tuple(float(v) for v in x)
