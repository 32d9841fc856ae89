"""The surrogate's uncertainty: the posterior of a Bayesian linear model, and calibrated."""

from __future__ import annotations

import numpy as np
import pytest

from proposer.surrogate import ALPHAS, QuadraticSurrogate, features

RNG = np.random.default_rng(3)


def test_the_sd_is_the_posterior_sd_of_the_bayesian_model_it_fits():
    x = RNG.dirichlet(np.ones(5), size=30)
    y = np.stack([x @ RNG.normal(size=5) + RNG.normal(0, 0.1, 30), (x**2).sum(axis=1)], axis=1)
    model = QuadraticSurrogate(x, y, on_simplex=True)
    test = RNG.dirichlet(np.ones(5), size=6)
    f, f_test = features(x, True), features(test, True)
    for column in range(2):
        # Flat prior on the 5 first-order terms, precision alpha / s^2 on the second-order ones.
        penalty = np.diag([0.0] * 5 + [model.alphas[column]] * (f.shape[1] - 5))
        covariance = np.linalg.inv(f.T @ f + penalty)
        mean = f_test @ covariance @ f.T @ y[:, column]
        sd = model.noise_sd[column] * np.sqrt(np.einsum("ij,jk,ik->i", f_test, covariance, f_test))
        assert model.predict(test)[:, column] == pytest.approx(mean)
        assert model.predict_sd(test)[:, column] == pytest.approx(sd)
        assert model.alphas[column] in ALPHAS


def test_errors_divided_by_the_sd_have_about_unit_spread():
    """On a noisy quadratic (the model class) the sd is neither much too wide nor too narrow."""
    optimum = RNG.dirichlet(np.ones(6))
    truth = lambda w: 1.0 + 3.0 * ((w - optimum) ** 2).sum(axis=1)  # noqa: E731
    z = []
    for _ in range(20):
        x = RNG.dirichlet(np.ones(6), size=40)
        model = QuadraticSurrogate(x, (truth(x) + RNG.normal(0, 0.05, 40))[:, None], on_simplex=True)
        test = RNG.dirichlet(np.ones(6), size=10)
        z.append((truth(test) - model.predict(test)[:, 0]) / model.predict_sd(test)[:, 0])
    spread = float(np.std(np.concatenate(z)))
    assert 0.5 < spread < 2.0, spread


def test_the_sd_grows_away_from_the_trials_and_with_the_noise():
    x = np.hstack([RNG.dirichlet(np.ones(3), size=30), np.zeros((30, 1))])  # no trial puts weight on c3
    y = (x[:, :1] + RNG.normal(0, 0.01, (30, 1)))
    quiet = QuadraticSurrogate(x, y, on_simplex=True)
    loud = QuadraticSurrogate(x, y + RNG.normal(0, 0.3, (30, 1)), on_simplex=True)
    near, far = np.array([[0.3, 0.3, 0.4, 0.0]]), np.array([[0.1, 0.1, 0.1, 0.7]])
    assert quiet.predict_sd(far)[0, 0] > 5 * quiet.predict_sd(near)[0, 0]
    assert loud.predict_sd(near)[0, 0] > 5 * quiet.predict_sd(near)[0, 0]
    # Leave-one-out predictions: each trial's, by the model fitted without it.
    without = QuadraticSurrogate(x[1:], y[1:], on_simplex=True)
    if without.alphas == quiet.alphas:
        assert quiet.loo_predictions[0, 0] == pytest.approx(without.predict(x[:1])[0, 0], abs=1e-6)
