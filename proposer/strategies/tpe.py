"""Hyperopt's TPE, driven through its trial documents instead of the blocking `fmin`.

Every trial is one hyperopt document whose tid is the trial number: asked trials
are pending (hyperopt counts them as bad points, so concurrent asks spread out),
told ones carry their loss, and points this strategy never asked (the baselines)
are inserted as finished documents. TPE sorts documents by tid, so the set of
observations matters, not the order of the tells.

`sample(number, n)` with n > 1 (pre-screening, see proposer.prescreen), past the random
startup, draws n points from TPE's density of good points, its favourite first, instead
of keeping only the favourite; during the startup, and with n = 1, it is `tpe.suggest`.

Why not hyperopt's public API alone. Its one public entry point, `tpe.suggest`, returns one
point per call: per coordinate the best of its own `n_EI_candidates` draws by l(x)/g(x),
the rest discarded; there is no public call for several draws of l(x). The public way to
get 16 candidates is 16 `suggest` calls with 16 seeds: 16 favourites instead of 16 draws
(less spread for the surrogate to choose from), each call rebuilding the posterior from
every document: at 1000 told trials and 16 weights ~30x the cost of `candidates`, far over
the proposer's 50 ms budget per ask (bench/search_design.py; docs/results/search.md). So `candidates` assembles
them from the module-level functions `suggest` itself calls (`ap_split_trials`,
`adaptive_parzen_normal`, `GMM1`, `GMM1_lpdf`: public names, not underscored, but not
documented), with suggest's own defaults read from its signature instead of hyperopt's
private `_default_*` names; pyproject pins hyperopt to the versions these were checked on.
The plain ask (n = 1, no surrogate) is `tpe.suggest` itself.

Coordinates: one uniform(0, high) per weight when unnormalized; on the simplex, the
n-1 stick-breaking coordinates (see `simplex`). A document's values are always
computed from the weights handed out, so the document rebuilt from a stored
proposal after a restart is identical to the one made at ask time. (Storing
x / sum(x) of a sample in [0, 1]^n instead loses the scale and misleads TPE:
on a 5-weight toy it did worse than random search.)
"""

from __future__ import annotations

import inspect
from typing import Sequence

import numpy as np
from hyperopt import Trials, hp, tpe
from hyperopt.base import JOB_STATE_DONE, JOB_STATE_RUNNING, Domain, trials_from_docs

from proposer.strategies import simplex
from proposer.strategies.base import Strategy, Weights, derived_seed

# tpe.suggest's defaults for the good/bad split and the prior's weight (0.25 and 1.0 in
# hyperopt 0.2.7-0.3.0), read from its signature so the candidates follow suggest.
GAMMA = inspect.signature(tpe.suggest).parameters["gamma"].default
PRIOR_WEIGHT = inspect.signature(tpe.suggest).parameters["prior_weight"].default


class TPEStrategy(Strategy):
    name = "tpe"
    # Candidates per pre-screened ask. Tuned on bench/search.py's tuning seeds 0-4, demo pool,
    # 32 / 64 trials: 16 gave 1.23x random's hypervolume gain at both; 64 gave 1.27x but a
    # worse best macro-average at 32 trials.
    default_candidates = 16
    # Ask cost grows with the documents TPE reads (16 weights, 2 cores: ~15 ms
    # at 200, ~30 ms at 1000). It reads a window: the best finished trials (its
    # "good" density is built from at most 25 of them), the most recent finished
    # ones, and every pending one.
    window_best = 50
    window_recent = 150

    def __init__(self, n_weights: int, seed: int, normalize: bool, high: float = 1.0, candidates: int | None = None,
                 surrogate: bool = False, blocks: int = 1):
        super().__init__(n_weights, seed, normalize, high, candidates, surrogate, blocks)
        # On the simplex n - 1 sticks per block (layer group).
        self._labels = [f"u{i}" for i in range(n_weights - blocks if normalize else n_weights)]
        space = {label: hp.uniform(label, 0.0, high) for label in self._labels}
        self._domain = Domain(lambda _: 0.0, space)  # never called: results come from tell
        # Random startup until this many documents exist; small budgets can't wait for 20.
        self.n_startup_jobs = max(5, min(20, 2 * n_weights))
        self._trials = Trials()
        self._docs: dict[int, dict] = {}

    def sample(self, number: int, n: int = 1) -> list[Weights]:
        docs = self.window()
        if n > 1 and len(docs) >= self.n_startup_jobs:
            return self.candidates(docs, number, n)
        window = trials_from_docs(docs, validate=False)
        [doc] = tpe.suggest(
            [number],
            self._domain,
            window,
            derived_seed(self.seed, number),
            n_startup_jobs=self.n_startup_jobs,
            verbose=False,
        )
        return [self._weights([float(doc["misc"]["vals"][label][0]) for label in self._labels])]

    def _proposed(self, number: int, weights: Weights) -> None:
        self._insert(number, weights)

    def candidates(self, docs: list[dict], number: int, n: int) -> list[Weights]:
        """n draws from TPE's density of good points l(x), best by its own criterion
        l(x)/g(x) first.

        Made of hyperopt's own pieces, as `tpe.suggest` uses them for uniform parameters
        (the good/bad split, the adaptive Parzen estimators, the truncated mixtures);
        suggest itself keeps only its favourite draw, per coordinate.
        """
        tids = [doc["tid"] for doc in docs]
        # Pending and failed trials count as infinitely bad, as in tpe.suggest.
        losses = [float(doc["result"]["loss"]) if "loss" in doc["result"] else float("inf") for doc in docs]
        rng = np.random.default_rng(derived_seed(self.seed, number))
        draws = np.empty((n, len(self._labels)))
        log_ratio = np.zeros(n)
        for column, label in enumerate(self._labels):
            values = [doc["misc"]["vals"][label][0] for doc in docs]
            below, above = tpe.ap_split_trials(tids, values, tids, losses, GAMMA)
            # Prior of hp.uniform(0, high): centred, as wide as the range.
            high = self.high
            good = tpe.adaptive_parzen_normal(below, PRIOR_WEIGHT, high / 2, high)
            bad = tpe.adaptive_parzen_normal(above, PRIOR_WEIGHT, high / 2, high)
            x = tpe.GMM1(*good, low=0.0, high=high, rng=rng, size=(n,))
            draws[:, column] = x
            log_ratio += tpe.GMM1_lpdf(x, *good, low=0.0, high=high) - tpe.GMM1_lpdf(x, *bad, low=0.0, high=high)
        return [self._weights(draws[i]) for i in np.argsort(-log_ratio, kind="stable")]

    def _weights(self, coords) -> Weights:
        coords = [float(c) for c in coords]
        return self.per_block(coords, simplex.from_sticks) if self.normalize else tuple(coords)

    def _tell(self, number: int, weights: Weights, loss: float | None) -> None:
        doc = self._docs.get(number) or self._insert(number, weights)
        # A failed trial stays a finished document without a loss: TPE treats it as
        # infinitely bad, like hyperopt does for failed evaluations.
        doc["result"] = {"status": "ok", "loss": float(loss)} if loss is not None else {"status": "fail"}
        doc["state"] = JOB_STATE_DONE

    def restore(self, asked: Sequence[tuple[int, Weights]], told: Sequence[tuple[int, Weights, float | None]]) -> None:
        for number, weights in asked:
            self._insert(number, weights)
        super().restore(asked, told)

    def window(self) -> list[dict]:
        """The documents TPE reads on the next ask, in tid order."""
        done = [d for d in self._docs.values() if d["state"] == JOB_STATE_DONE]
        ok = [d for d in done if d["result"]["status"] == "ok"]
        best = sorted(ok, key=lambda d: (d["result"]["loss"], d["tid"]))[: self.window_best]
        recent = sorted(done, key=lambda d: d["tid"])[-self.window_recent :]
        pending = [d for d in self._docs.values() if d["state"] != JOB_STATE_DONE]
        chosen = {d["tid"]: d for d in best + recent + pending}
        return [chosen[tid] for tid in sorted(chosen)]

    def _insert(self, number: int, weights: Weights) -> dict:
        """A pending document whose values are these weights."""
        vals = self.per_block(weights, simplex.to_sticks) if self.normalize else np.clip(weights, 0.0, self.high)
        misc = {
            "tid": number,
            "cmd": self._domain.cmd,
            "workdir": self._domain.workdir,
            "idxs": {label: [number] for label in self._labels},
            "vals": {label: [float(v)] for label, v in zip(self._labels, vals)},
        }
        [doc] = self._trials.new_trial_docs([number], [None], [{"status": "new"}], [misc])
        doc["state"] = JOB_STATE_RUNNING
        self._trials.insert_trial_docs([doc])
        self._trials.refresh()
        self._docs[number] = self._trials.trials[-1]
        return self._docs[number]
