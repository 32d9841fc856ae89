import pytest

from contracts import Direction, Objective
from proposer.scalarize import RHO, Scalarizer, loss_vector

OBJECTIVES = [
    Objective(name="nll", direction=Direction.minimize),
    Objective(name="acc", direction=Direction.maximize),
]


def test_loss_form_flips_maximized_scores():
    assert loss_vector({"acc": 0.7, "nll": 2.0}, OBJECTIVES) == [2.0, -0.7]


def test_missing_objective_is_a_clear_error():
    with pytest.raises(ValueError, match="acc"):
        loss_vector({"nll": 2.0}, OBJECTIVES)


def test_scalarizer_is_identity_before_baselines():
    scalarizer = Scalarizer(OBJECTIVES)
    assert scalarizer.normalize({"nll": 2.0, "acc": 0.5}) == [2.0, -0.5]
    assert scalarizer.mean({"nll": 2.0, "acc": 0.5}) == pytest.approx(0.75)


def test_scalarizer_scales_by_the_baselines_ideal_and_nadir():
    # Loss form: nll in [2, 4], acc in [-0.8, -0.4].
    scalarizer = Scalarizer(OBJECTIVES, [{"nll": 2.0, "acc": 0.4}, {"nll": 4.0, "acc": 0.8}])
    scores = {"nll": 3.0, "acc": 0.7}
    assert scalarizer.normalize(scores) == pytest.approx([0.5, 0.25])
    assert scalarizer.mean(scores) == pytest.approx(0.375)
    # max(0.2 * 0.5, 0.8 * 0.25) + RHO * (0.1 + 0.2)
    assert scalarizer.chebyshev(scores, [0.2, 0.8]) == pytest.approx(0.2 + RHO * 0.3)
    assert scalarizer.chebyshev({"nll": 2.0, "acc": 0.8}, [0.5, 0.5]) == 0.0  # the ideal point


def test_an_objective_without_spread_is_only_shifted():
    scalarizer = Scalarizer(OBJECTIVES, [{"nll": 2.0, "acc": 0.5}, {"nll": 3.0, "acc": 0.5}])
    assert scalarizer.normalize({"nll": 2.0, "acc": 0.6}) == pytest.approx([0.0, -0.1])


def test_chebyshev_weights_must_match_the_objectives():
    with pytest.raises(ValueError):
        Scalarizer(OBJECTIVES).chebyshev({"nll": 1.0, "acc": 0.5}, [1.0])
