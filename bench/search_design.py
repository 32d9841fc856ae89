"""Figures behind two design choices of the search strategies, measured for docs/results/search.md.

simplex_coordinates  CMA-ES's initial distribution on the simplex: the mean weight of each
                     checkpoint and the share of samples with > 0.01 on every checkpoint, for the
                     isometric log-ratios shipped (sigma pi/sqrt(6)), the additive log-ratios
                     softmax([z, 0]) with sigma 1 they replaced, and Dirichlet(1) (random search).
tpe_candidates       the cost of TPE's 16 candidates per ask from hyperopt's pieces
                     (TPEStrategy.candidates) against 16 calls of the public tpe.suggest, at 1000
                     told trials and 16 weights.
"""

from __future__ import annotations

import time

import numpy as np

DRAWS = 20000


def simplex_coordinates(checkpoints=(9, 17), draws: int = DRAWS, seed: int = 0) -> list[dict]:
    from proposer.strategies import simplex
    from proposer.strategies.cma_es import SIGMA

    rng = np.random.default_rng(seed)
    rows = []
    for n in checkpoints:
        ilr = rng.normal(0.0, SIGMA, (draws, n - 1)) @ simplex.helmert_basis(n).T
        alr = np.hstack([rng.normal(0.0, 1.0, (draws, n - 1)), np.zeros((draws, 1))])
        for label, weights in (("isometric log-ratios, sigma pi/sqrt(6)", softmax(ilr)),
                               ("additive log-ratios, sigma 1 (before)", softmax(alr)),
                               ("Dirichlet(1) (random search)", rng.dirichlet(np.ones(n), draws))):
            mean = weights.mean(axis=0)
            rows.append({"figure": "simplex_coordinates", "checkpoints": n, "coordinates": label, "draws": draws,
                         "mean_weight_min": float(mean.min()), "mean_weight_max": float(mean.max()),
                         "mean_weight_last": float(mean[-1]),
                         "dense_share": float((weights > 0.01).all(axis=1).mean())})
    return rows


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def tpe_candidates(told: int = 1000, n_weights: int = 16, candidates: int = 16, repeats: int = 5) -> dict:
    from hyperopt import tpe
    from hyperopt.base import trials_from_docs

    from proposer.strategies.base import derived_seed
    from proposer.strategies.tpe import TPEStrategy

    strategy = TPEStrategy(n_weights, 0, True)
    rng = np.random.default_rng(0)
    for number in range(told):
        strategy.tell(number, tuple(rng.dirichlet(np.ones(n_weights))), float(rng.random()))
    docs = strategy.window()
    pieces, public = [], []
    for k in range(repeats):
        number = told + k
        started = time.perf_counter()
        strategy.candidates(docs, number, candidates)
        pieces.append(time.perf_counter() - started)
        started = time.perf_counter()
        window = trials_from_docs(docs, validate=False)
        for j in range(candidates):
            tpe.suggest([number], strategy._domain, window, derived_seed(0, number, j),
                        n_startup_jobs=strategy.n_startup_jobs, verbose=False)
        public.append(time.perf_counter() - started)
    return {"figure": "tpe_candidates", "told": told, "weights": n_weights, "candidates": candidates,
            "pieces_ms": 1000 * float(np.median(pieces)), "public_suggest_ms": 1000 * float(np.median(public))}


def markdown(rows: list[dict], tpe_row: dict | None) -> list[str]:
    out = ["## Design figures (bench/search_design.py)", "",
           f"CMA-ES's initial distribution on the simplex ({rows[0]['draws']} draws): the mean weight of the "
           "checkpoints (equal for every one is unbiased) and the share of samples putting > 0.01 on every checkpoint.",
           "", "| checkpoints | coordinates | mean weight min / max (last) | share > 0.01 on all |", "|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['checkpoints']} | {r['coordinates']} | {r['mean_weight_min']:.3f} / {r['mean_weight_max']:.3f} "
                   f"({r['mean_weight_last']:.3f}) | {r['dense_share']:.3f} |")
    if tpe_row:
        out += ["", f"TPE's {tpe_row['candidates']} candidates per ask at {tpe_row['told']} told trials, "
                f"{tpe_row['weights']} weights (median of 5): {tpe_row['pieces_ms']:.1f} ms from hyperopt's pieces "
                f"(`TPEStrategy.candidates`), {tpe_row['public_suggest_ms']:.1f} ms as {tpe_row['candidates']} calls "
                "of the public `tpe.suggest`."]
    return out + [""]


if __name__ == "__main__":
    import json

    for row in [*simplex_coordinates(), tpe_candidates()]:
        print(json.dumps(row))
