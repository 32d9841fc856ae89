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

A Bayesian linear model per task: a flat prior on the first-order terms, N(0, s^2 / alpha)
on the second-order ones (shrinking towards linear blending), noise of variance s^2. Its
posterior mean is a ridge regression penalizing the second-order terms only; alpha and s^2
are chosen per task by the evidence (type-II maximum likelihood, MacKay 1992) over a grid,
s^2 in closed form given alpha, so a handful of trials gives a cautious model and many
trials a sharp one. `predict_sd` is the posterior sd of the predicted mean,

    s^2 * [ f1 (F1'F1)^-1 f1'  +  g (R2'R2 + alpha I)^-1 g' ],   g = f2 - f1 F1^+ F2,

(F1, F2: first- and second-order terms of the trials, R2: F2 with the first-order terms
projected out): it grows far from the trials and along second-order directions no trial
has pinned down. A first-order term no trial identifies (no trial on that face of the
simplex, e.g. a search without baselines) gets a prior as wide as the scores' mean square. Choosing alpha by leave-one-out error instead (as this model did before)
gave as good a mean but an sd 3-10x too wide on bench/search.py's synthetic surface (sd of
(truth - mean) / sd over 16 random points: 0.0-0.3 at 20-64 trials; by the evidence
0.6-1.8), and an acquisition reading it did worse (docs/results/search.md, "Tuning").
The loss surfaces searched (bench/search.py's synthetic one, real pools) are not quadratic:
the model has to rank candidates (see `proposer.prescreen`), and s^2 absorbs its misfit.

More weights than trials. The quadratic has n(n+1)/2 coefficients on the simplex (n = 32:
528), far more than a search's trials; the prior keeps the fit defined (the second-order
terms are shrunk towards linear blending, the sd says how little is known about them), so
no other fallback is needed up to MAX_WEIGHTS; above it the pre-screen fits nothing and the
strategy's own choice stands (its cost, not its statistics, sets that limit).
"""

from __future__ import annotations

import numpy as np

# Prior precision ratios alpha tried by the evidence (features are products of weights in [0, 1]).
ALPHAS = tuple(10.0**k for k in range(-6, 3))
# Above this many weights the caller fits no surrogate: n(n+1)/2 terms (528 at 32) make
# every ask's fit cost ~10 ms more per doubling of n, for a model the trials barely inform.
MAX_WEIGHTS = 32
# A fit reads the first trials (the baselines anchor it) and the most recent ones: its cost
# grows with the trials it reads, its accuracy barely does.
FIT_FIRST, FIT_RECENT = 50, 200


def fit_rows(n: int) -> np.ndarray:
    """Which of n trials (in trial order) a fit reads."""
    return np.r_[0 : min(FIT_FIRST, n), max(FIT_FIRST, n - FIT_RECENT) : n]


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

    Ridge on the second-order terms only, solved exactly for every alpha at once: the
    first-order terms are projected out, the rest is one SVD. Also kept: the leave-one-out
    predictions of the trials (a linear smoother's residual e_i / (1 - h_ii)), which
    lq-CMA-ES's rank test reads (proposer.strategies.cma_es), and their RMSE.
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
        loo = np.zeros_like(y)
        dof = max(len(x) - q1.shape[1], 1)  # dimensions of y the first order leaves unexplained
        rest = np.maximum((residual_y**2).sum(axis=0) - (uy**2).sum(axis=0), 0.0)
        best_evidence = np.full(y.shape[1], -np.inf)
        noise_var = np.zeros(y.shape[1])
        second_coefficients = np.zeros((second.shape[1], y.shape[1]))
        self.alphas: list[float | None] = [None] * y.shape[1]
        for alpha in ALPHAS:
            shrink = s**2 / (s**2 + alpha)
            fitted = base_fit + u @ (shrink[:, None] * uy)
            leverage = base_leverage + (u**2) @ shrink
            residuals = (y - fitted) / np.maximum(1.0 - leverage, 1e-6)[:, None]
            error = (residuals**2).mean(axis=0)  # exact leave-one-out error per column
            # Evidence: y's residual components along the trials' second-order directions have
            # variance noise * (1 + s^2 / alpha), the others the noise's; the noise is profiled out.
            variance = ((alpha / (s**2 + alpha))[:, None] * uy**2).sum(axis=0) / dof + rest / dof
            evidence = -0.5 * (np.log1p(s**2 / alpha).sum() + dof * np.log(np.maximum(variance, 1e-300)))
            better = evidence > best_evidence
            if better.any():
                best_evidence[better] = evidence[better]
                noise_var[better] = variance[better]
                best_error[better] = error[better]
                loo[:, better] = (y - residuals)[:, better]
                beta = vt.T @ ((s / (s**2 + alpha))[:, None] * uy[:, better])
                second_coefficients[:, better] = beta
                for column in np.flatnonzero(better):
                    self.alphas[column] = alpha
        first_coefficients = vt1.T @ ((q1.T @ (y - second @ second_coefficients)) / s1[:, None])
        self.coefficients = np.vstack([first_coefficients, second_coefficients])
        self.loo_rmse = np.sqrt(best_error)
        self.noise_sd = np.sqrt(noise_var)
        # What each trial's score is predicted to be by the model fitted without it.
        self.loo_predictions = loo
        # For predict_sd: first-order terms of x map to their coefficients' covariance through
        # vt1 / s1; F1^+ F2 turns second-order terms into what the first order can explain.
        self._k, self._first_map = k, vt1.T / s1
        self._explained = self._first_map @ (q1.T @ second)
        self._second_basis, self._second_s2 = vt, s**2
        # First-order directions no trial identifies (no trial on that face of the simplex): the
        # prior of such a coefficient is as wide as the scores seen.
        self._first_basis, self._unidentified_var = vt1, y.var(axis=0) + (y.mean(axis=0) ** 2)
        self._alpha = np.array([a if a is not None else ALPHAS[-1] for a in self.alphas])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return features(x, self.on_simplex) @ self.coefficients

    def predict_sd(self, x: np.ndarray) -> np.ndarray:
        """Posterior sd of the predicted score, per row of x and task (see the module docstring)."""
        f = features(x, self.on_simplex)
        f1, f2 = f[:, : self._k], f[:, self._k :]
        first = ((f1 @ self._first_map) ** 2).sum(axis=1, keepdims=True)
        g = f2 - f1 @ self._explained
        along = (g @ self._second_basis.T) ** 2  # g's squared components along the trials' directions
        rest = np.maximum((g**2).sum(axis=1, keepdims=True) - along.sum(axis=1, keepdims=True), 0.0)
        second = along @ (1.0 / (self._second_s2[:, None] + self._alpha[None, :])) + rest / self._alpha[None, :]
        unidentified = np.maximum((f1**2).sum(axis=1) - ((f1 @ self._first_basis.T) ** 2).sum(axis=1), 0.0)
        return np.sqrt(self.noise_sd[None, :] ** 2 * (first + second) + unidentified[:, None] * self._unidentified_var[None, :])
