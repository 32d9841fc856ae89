"""The paired bootstrap: zero for identical models, a clear win for a real improvement, none for noise."""

from __future__ import annotations

import numpy as np
import pytest

from recycle.local.significance import macro_nll, paired_bootstrap


def losses(per_token: dict[str, np.ndarray], tokens: int = 100) -> dict:
    return {task: (values * tokens, np.full(len(values), tokens)) for task, values in per_token.items()}


@pytest.fixture
def baseline():
    rng = np.random.default_rng(1)
    # Windows differ a lot in difficulty: the pairing must cancel that.
    return {"code": rng.uniform(1.0, 4.0, 40), "prose": rng.uniform(2.0, 5.0, 30)}


def test_identical_models_differ_by_nothing(baseline):
    result = paired_bootstrap(losses(baseline), losses(baseline), resamples=2000)
    assert result.mean == 0 and result.low == 0 and result.high == 0 and not result.significant


def test_a_small_consistent_gain_is_significant_despite_window_difficulty(baseline):
    better = {task: values - 0.02 for task, values in baseline.items()}
    result = paired_bootstrap(losses(baseline), losses(better), resamples=2000)
    assert result.mean == pytest.approx(0.02)
    assert result.significant and result.low > 0.015 and result.high < 0.025
    assert result.windows == 70


def test_noise_without_a_gain_is_not_significant(baseline):
    rng = np.random.default_rng(2)
    noisy = {task: values + rng.normal(0, 0.3, len(values)) for task, values in baseline.items()}
    noisy = {task: values - values.mean() + baseline[task].mean() for task, values in noisy.items()}  # same means
    result = paired_bootstrap(losses(baseline), losses(noisy), resamples=2000)
    assert result.low < 0 < result.high and not result.significant


def test_a_worse_candidate_has_a_negative_interval(baseline):
    worse = {task: values + 0.05 for task, values in baseline.items()}
    result = paired_bootstrap(losses(baseline), losses(worse), resamples=2000)
    assert result.high < 0 and not result.significant


def test_macro_average_is_token_weighted_per_task_then_averaged():
    per_task = {"a": (np.array([10.0, 30.0]), np.array([10, 10])), "b": (np.array([4.0]), np.array([4]))}
    assert macro_nll(per_task) == pytest.approx((40 / 20 + 1.0) / 2)


def test_models_scored_on_different_windows_are_refused(baseline):
    other = losses(baseline)
    other["code"] = (other["code"][0][:-1], other["code"][1][:-1])
    with pytest.raises(ValueError, match="same windows"):
        paired_bootstrap(losses(baseline), other)
    with pytest.raises(ValueError, match="same, non-empty set of tasks"):
        paired_bootstrap(losses(baseline), {"code": losses(baseline)["code"]})
