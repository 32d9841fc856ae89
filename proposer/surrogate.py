"""A quadratic response surface of every task in the merge weights.

Why quadratic: a merge is base + sum_i w_i * delta_i, so to second order (a Taylor
expansion around any merge) each task's loss is a quadratic function of the weights.
On the simplex the full quadratic reduces to Scheffe's mixture model

    y(w) = sum_i b_i w_i + sum_{i<j} b_ij w_i w_j

(an intercept and the squares are linear combinations of these terms once
sum_i w_i = 1): b_i is the single checkpoint's score and b_ij how much mixing i and
j beats (b_ij < 0 for a loss) or loses to blending their scores linearly.
Unnormalized weights (task arithmetic) take the general quadratic: an intercept,
w_i, and w_i w_j for i <= j.

The fit is a ridge regression whose penalty only shrinks the second-order terms
(towards linear blending), its strength picked per task by exact leave-one-out error
over a grid, so a handful of trials gives a cautious model and many trials a sharp one.
On the synthetic benchmark (bench/search.py, itself quadratic) the fit is exact once
there are enough trials; on real pools it is an approximation that only has to rank
candidates, see `proposer.prescreen`.
"""

from __future__ import annotations

import numpy as np

# Ridge strengths tried by leave-one-out (features are products of weights in [0, 1]).
ALPHAS = tuple(10.0**k for k in range(-6, 3))
# Above this many weights the quadratic has more coefficients (n(n+1)/2) than a search
# has trials: the caller should not fit one.
MAX_WEIGHTS = 32


def features(x: np.ndarray, on_simplex: bool) -> np.ndarray:
    """Rows of model terms for rows of weights (on the simplex: normalized first)."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    n = x.shape[1]
    if on_simplex:
        x = x / np.maximum(x.sum(axis=1, keepdims=True), 1e-300)
        i, j = np.triu_indices(n, 1)
        return np.hstack([x, x[:, i] * x[:, j]])
    i, j = np.triu_indices(n, 0)
    return np.hstack([np.ones((len(x), 1)), x, x[:, i] * x[:, j]])


def n_linear_terms(n_weights: int, on_simplex: bool) -> int:
    """Leading terms the ridge leaves unpenalized (intercept and first order)."""
    return n_weights if on_simplex else n_weights + 1


class QuadraticSurrogate:
    """One quadratic per column of `y`, fitted to weights `x` (rows: trials).

    Ridge on the second-order terms only, solved exactly for every strength at once:
    the first-order terms are projected out, the rest is one SVD, and the leave-one-out
    residual of a linear smoother is e_i / (1 - h_ii).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, on_simplex: bool):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if y.ndim != 2 or len(x) != len(y) or len(x) == 0:
            raise ValueError(f"need one row of scores per row of weights, got {x.shape} and {y.shape}")
        if x.shape[1] > MAX_WEIGHTS:
            raise ValueError(f"{x.shape[1]} weights: a quadratic surrogate is fitted for at most {MAX_WEIGHTS}")
        self.on_simplex = on_simplex
        f = features(x, on_simplex)
        k = n_linear_terms(x.shape[1], on_simplex)
        first, second = f[:, :k], f[:, k:]
        # Orthonormal basis of the unpenalized columns (rank-revealing: trials on one face
        # of the simplex leave some weights unidentified).
        u1, s1, vt1 = np.linalg.svd(first, full_matrices=False)
        keep = s1 > s1[0] * 1e-10
        q1, s1, vt1 = u1[:, keep], s1[keep], vt1[keep]
        residual_second = second - q1 @ (q1.T @ second)
        residual_y = y - q1 @ (q1.T @ y)
        u, s, vt = np.linalg.svd(residual_second, full_matrices=False)
        uy = u.T @ residual_y
        base_fit, base_leverage = q1 @ (q1.T @ y), (q1**2).sum(axis=1)

        best_error = np.full(y.shape[1], np.inf)
        second_coefficients = np.zeros((second.shape[1], y.shape[1]))
        self.alphas: list[float | None] = [None] * y.shape[1]
        for alpha in ALPHAS:
            shrink = s**2 / (s**2 + alpha)
            fitted = base_fit + u @ (shrink[:, None] * uy)
            leverage = base_leverage + (u**2) @ shrink
            residuals = (y - fitted) / np.maximum(1.0 - leverage, 1e-6)[:, None]
            error = (residuals**2).mean(axis=0)  # exact leave-one-out error per column
            better = error < best_error
            if better.any():
                best_error[better] = error[better]
                beta = vt.T @ ((s / (s**2 + alpha))[:, None] * uy[:, better])
                second_coefficients[:, better] = beta
                for column in np.flatnonzero(better):
                    self.alphas[column] = alpha
        first_coefficients = vt1.T @ ((q1.T @ (y - second @ second_coefficients)) / s1[:, None])
        self.coefficients = np.vstack([first_coefficients, second_coefficients])
        self.loo_rmse = np.sqrt(best_error)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return features(x, self.on_simplex) @ self.coefficients
