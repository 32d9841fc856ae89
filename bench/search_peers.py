"""The searches bench/search.py compares, all run by recycle's SearchDriver, so every peer
gets the same fixed baselines (singles, uniform soup) and greedy soup first, the same budget,
seeds, concurrency and completion order, and is told the same normalized objectives.

recycle's own: `options` are Algorithm fields for the spec. External ones: an Optuna
sampler behind recycle's Strategy interface (`OptunaStrategy`, driven by ask/tell), each
weight suggested in [0, 1] and normalized to sum to 1; the baselines are added to its study
as finished trials once their results are known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from proposer.strategies.base import Strategy, Weights


@dataclass(frozen=True)
class Peer:
    label: str
    options: dict = field(default_factory=dict)  # Algorithm fields (recycle's own peers)
    sampler: str | None = None  # an OptunaStrategy sampler name (external peers)


PEERS = (
    Peer("random", {"strategy": "random", "surrogate": False}),
    # Random Dirichlet candidates, 16 per ask, through the same pre-screen as the default.
    Peer("random+surrogate", {"strategy": "random", "surrogate": True, "candidates": 16}),
    Peer("tpe", {"strategy": "tpe", "surrogate": False}),
    Peer("cmaes", {"strategy": "cmaes", "surrogate": False}),
    Peer("default", {}),  # what a search gets with no algorithm options: TPE + surrogate
    # CMA-ES with the surrogate the published way (lq-CMA-ES, proposer/strategies/cma_es.py).
    Peer("lq-cmaes", {"strategy": "cmaes", "surrogate": True}),
    Peer("optuna-tpe", sampler="tpe"),
    Peer("optuna-nsga2", sampler="nsga2"),
    Peer("paper-cmaes", sampler="cmaes"),
)


def optuna_sampler(name: str, seed: int, n_weights: int):
    import optuna

    if name == "tpe":  # multi-objective TPE (MOTPE), Optuna's defaults
        return optuna.samplers.TPESampler(seed=seed), True
    if name == "nsga2":
        # The default population (50) would leave a 64-trial budget one generation; 16 gives
        # NSGA-II three generations past the baselines.
        return optuna.samplers.NSGAIISampler(population_size=16, seed=seed), True
    if name == "cmaes":
        # 2412.04144's search: CMA-ES over one weight per checkpoint, normalized to sum to 1,
        # maximizing the macro-average. Its step size and population are not in the text we
        # could retrieve offline, so Optuna's defaults (x0 = 0.5 each, i.e. the uniform soup,
        # sigma0 = 1/6 of the range, population 4 + 3 ln n): this peer is also "Optuna's CMA-ES",
        # single-objective as Optuna's CmaEsSampler is.
        return optuna.samplers.CmaEsSampler(seed=seed), False
    raise ValueError(f"unknown sampler {name!r}")


class OptunaStrategy(Strategy):
    """An Optuna sampler through ask/tell: each proposal is one `study.ask()`, each result one
    `study.tell`, with the normalized loss vector (multi-objective samplers) or the normalized
    macro-average. `vector_of(number)`: the normalized loss vector of that trial's result."""

    name = "external"

    def __init__(self, n_weights: int, seed: int, sampler: str, vector_of: Callable[[int], list[float]],
                 n_objectives: int):
        super().__init__(n_weights, seed, normalize=True)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._sampler, self.multi = optuna_sampler(sampler, seed, n_weights)
        directions = ["minimize"] * n_objectives if self.multi else ["minimize"]
        self.study = optuna.create_study(directions=directions, sampler=self._sampler)
        self._distribution = optuna.distributions.FloatDistribution(0.0, 1.0)
        self._trials: dict[int, object] = {}
        self.vector_of = vector_of

    def sample(self, number: int, n: int = 1) -> list[Weights]:
        trial = self._trials.get(number) or self._trials.setdefault(number, self.study.ask())
        x = np.array([trial.suggest_float(f"w{i}", 0.0, 1.0) for i in range(self.n_weights)])
        total = x.sum()
        return [tuple(float(v) for v in (x / total if total > 0 else np.full(self.n_weights, 1.0 / self.n_weights)))]

    def _values(self, number: int, loss: float | None):
        if loss is None:
            return None
        vector = self.vector_of(number)
        return vector if self.multi else [loss]

    def _tell(self, number: int, weights: Weights, loss: float | None) -> None:
        import optuna

        values = self._values(number, loss)
        trial = self._trials.get(number)
        if trial is not None:  # its own proposal
            if values is None:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                self.study.tell(trial, values)
        elif values is not None:  # a baseline: a finished trial at those weights
            params = {f"w{i}": float(w) for i, w in enumerate(weights)}
            self.study.add_trial(optuna.trial.create_trial(
                params=params, distributions={k: self._distribution for k in params}, values=values))
