import pytest

from contracts import Direction, Objective
from proposer.scalarize import loss_vector

OBJECTIVES = [
    Objective(name="nll", direction=Direction.minimize),
    Objective(name="acc", direction=Direction.maximize),
]


def test_loss_form_flips_maximized_scores():
    assert loss_vector({"acc": 0.7, "nll": 2.0}, OBJECTIVES) == [2.0, -0.7]


def test_missing_objective_is_a_clear_error():
    with pytest.raises(ValueError, match="acc"):
        loss_vector({"nll": 2.0}, OBJECTIVES)
