"""The verdict's statistics: a paired cluster bootstrap over groups, Holm's correction, the worst-task test."""

from __future__ import annotations

import numpy as np
import pytest

from evaluator.tasks import ItemScores
from recycle.local.significance import (cluster_standard_error, decide, expected_noise_range, holm, macro_test,
                                        resampled_differences, worst_task_test)

WEIGHTS = {"code": 1.0, "quiz": -1.0}  # a loss counts up, an accuracy down


def windows(nll_per_token: np.ndarray, groups: np.ndarray, tokens: int = 100) -> ItemScores:
    return ItemScores(nll_per_token * tokens, np.full(len(nll_per_token), float(tokens)), groups)


def answers(correct: np.ndarray, groups: np.ndarray) -> ItemScores:
    return ItemScores(correct.astype(float), np.ones(len(correct)), groups)


@pytest.fixture
def baseline():
    rng = np.random.default_rng(1)
    # 20 sources of 4 windows each; windows differ a lot in difficulty: the pairing must cancel that.
    groups = np.repeat(np.arange(20), 4)
    return {"code": windows(rng.uniform(1.0, 4.0, 80), groups), "quiz": answers(rng.random(60) < 0.5, np.repeat(np.arange(15), 4))}


def shifted(items: dict, code_delta: np.ndarray | float = 0.0, quiz: np.ndarray | None = None) -> dict:
    code = items["code"]
    moved = {**items, "code": ItemScores(code.numerator + code_delta * code.denominator, code.denominator, code.groups)}
    if quiz is not None:
        moved["quiz"] = answers(quiz, items["quiz"].groups)
    return moved


def test_identical_models_differ_by_nothing(baseline):
    test = macro_test("same", baseline, baseline, WEIGHTS, resamples=500)
    assert test.diff == 0 and test.p_value == 1.0
    assert set(test.groups.values()) == {20, 15}


def test_a_real_improvement_on_every_item_is_significant(baseline):
    better = shifted(baseline, -0.05)
    test = macro_test("better", baseline, better, WEIGHTS, resamples=2000)
    assert test.diff == pytest.approx(0.05)
    [decision] = decide([test])
    assert decision.significant and decision.low > 0 and decision.low <= test.diff <= decision.high
    assert decision.confidence == pytest.approx(0.9)  # one test: alpha 0.05 per tail


def test_accuracy_counts_with_its_direction(baseline):
    quiz = baseline["quiz"].numerator.astype(bool)
    more_right = quiz.copy()
    more_right[np.flatnonzero(~quiz)[:10]] = True
    test = macro_test("quiz", baseline, shifted(baseline, quiz=more_right), WEIGHTS, resamples=500)
    assert test.diff == pytest.approx(10 / 60)  # positive: the candidate answers more right


def test_groups_are_the_unit_so_correlated_windows_widen_the_interval():
    """Each source's windows share its effect: resampling windows as if independent is too narrow."""
    rng = np.random.default_rng(7)
    groups = np.repeat(np.arange(12), 8)
    effect = np.repeat(rng.normal(0.0, 0.05, 12), 8) + rng.normal(0.0, 0.005, 96)
    base = {"code": windows(np.full(96, 3.0), groups)}
    cand = {"code": windows(3.0 - effect, groups)}
    by_window = {task: ItemScores(i.numerator, i.denominator, np.arange(96)) for task, i in base.items()}
    cand_by_window = {task: ItemScores(i.numerator, i.denominator, np.arange(96)) for task, i in cand.items()}
    grouped = resampled_differences(base, cand, 2000)["code"][1]
    naive = resampled_differences(by_window, cand_by_window, 2000)["code"][1]
    assert np.std(grouped) > 2 * np.std(naive)


def test_the_bootstrap_rejects_a_true_null_about_as_often_as_alpha():
    """Two models whose per-source differences are pure noise around zero: ~5% one-sided rejections."""
    rng = np.random.default_rng(11)
    groups = np.repeat(np.arange(30), 3)
    rejections = 0
    for _ in range(150):
        base = {"code": windows(rng.uniform(2.0, 4.0, 90), groups)}
        noise = np.repeat(rng.normal(0.0, 0.02, 30), 3)
        cand = shifted(base, noise)
        rejections += decide([macro_test("null", base, cand, {"code": 1.0}, resamples=400)])[0].significant
    assert rejections / 150 <= 0.1


def test_holm_matches_the_step_down_rule():
    adjusted, reject, levels = holm([0.01, 0.04, 0.03])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06])
    assert reject == [True, False, False]
    assert levels == pytest.approx([0.05 / 3, 0.05 / 1, 0.05 / 2])


def test_a_family_is_corrected_together(baseline):
    slightly = shifted(baseline, -0.002)
    alone = decide([macro_test("slight", baseline, slightly, WEIGHTS, resamples=2000)])[0]
    crowd = decide([macro_test("slight", baseline, slightly, WEIGHTS, resamples=2000)]
                   + [macro_test("same", baseline, baseline, WEIGHTS, resamples=200)] * 9)[0]
    assert crowd.p_holm >= alone.p_holm and crowd.low <= alone.low


def test_better_on_every_task_is_the_worst_task_margin(baseline):
    quiz = baseline["quiz"].numerator.astype(bool)
    fewer_right = quiz.copy()
    fewer_right[np.flatnonzero(quiz)[:6]] = False
    tradeoff = worst_task_test("tradeoff", baseline, shifted(baseline, -0.5, fewer_right), WEIGHTS, resamples=1000)
    assert tradeoff.diff == pytest.approx(-6 / 60) and not decide([tradeoff])[0].significant
    everywhere = worst_task_test("both", baseline, shifted(baseline, -0.5, np.ones(60, bool)), WEIGHTS, resamples=1000)
    assert everywhere.diff > 0 and decide([everywhere])[0].significant


def test_models_scored_on_other_items_are_refused(baseline):
    other = {"code": windows(np.ones(80), np.arange(80)), "quiz": baseline["quiz"]}
    with pytest.raises(ValueError, match="same items"):
        macro_test("x", baseline, other, WEIGHTS)
    with pytest.raises(ValueError, match="same"):
        macro_test("x", baseline, {"code": baseline["code"]}, WEIGHTS)


def test_the_cluster_standard_error_is_the_textbook_one_and_follows_the_groups():
    rng = np.random.default_rng(3)
    values = rng.normal(2.0, 1.0, 200)
    alone = ItemScores(values, np.ones(200), np.arange(200))  # every item its own group: s / sqrt(n)
    assert cluster_standard_error(alone) == pytest.approx(values.std(ddof=1) / np.sqrt(200))
    # Windows of 20 sources, each source with its own level: the error is the sources', not the windows'.
    groups = np.repeat(np.arange(20), 10)
    nll = rng.normal(3.0, 0.5, 20)[groups] + rng.normal(0.0, 0.05, 200)
    items = windows(nll, groups)
    per_source = np.bincount(groups, weights=nll) / 10
    assert cluster_standard_error(items) == pytest.approx(per_source.std(ddof=1) / np.sqrt(20), rel=1e-6)
    assert cluster_standard_error(items) > 2.5 * nll.std(ddof=1) / np.sqrt(200)  # what a window-level error would say


def test_the_expected_noise_range_matches_simulation():
    assert expected_noise_range(2) == pytest.approx(2 / np.sqrt(np.pi))
    draws = np.random.default_rng(0).standard_normal((20_000, 17))
    assert expected_noise_range(17) == pytest.approx(np.ptp(draws, axis=1).mean(), rel=0.01)


def test_the_paired_standard_error_cancels_what_the_items_share():
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(25), 4)
    difficulty = rng.normal(3.0, 0.6, 25)[groups] + rng.normal(0.0, 0.3, 100)  # shared by both models
    first, second = windows(difficulty, groups), windows(difficulty + 0.05 + rng.normal(0.0, 0.02, 100), groups)
    paired = cluster_standard_error(second, reference=first.numerator)
    per_source = np.bincount(groups, weights=second.numerator - first.numerator) / np.bincount(groups, weights=first.denominator)
    assert paired == pytest.approx(per_source.std(ddof=1) / np.sqrt(25), rel=1e-6)
    assert paired < cluster_standard_error(second) / 10
