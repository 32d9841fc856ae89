import itertools
import random

import pytest

from contracts import Direction, Objective, Proposal, TrialResult, TrialStatus
from proposer.pareto import ParetoArchive, dominates, hypervolume

MIN2 = [Objective(name="a", direction=Direction.minimize), Objective(name="b", direction=Direction.minimize)]
MIXED = [Objective(name="nll", direction=Direction.minimize), Objective(name="acc", direction=Direction.maximize)]


def result(number: int, status=TrialStatus.ok, **scores) -> TrialResult:
    proposal = Proposal(search_id="s", trial_id=f"s-t{number}", number=number, weights=(1.0,), source="tpe")
    if status is TrialStatus.failed:
        return TrialResult(proposal=proposal, status=status, error="boom")
    return TrialResult(proposal=proposal, status=status, scores=scores)


def test_dominates():
    assert dominates((1, 2), (2, 2))
    assert not dominates((1, 2), (1, 2))  # equal: neither dominates
    assert not dominates((1, 3), (2, 2))
    assert not dominates((2, 2), (1, 2))


def test_archive_keeps_the_non_dominated_set():
    archive = ParetoArchive(MIN2)
    assert archive.add(result(0, a=2.0, b=2.0))
    assert archive.add(result(1, a=1.0, b=3.0))
    assert not archive.add(result(2, a=2.5, b=2.5))  # dominated by 0
    assert archive.add(result(3, a=1.5, b=1.5))  # dominates 0
    assert [r.trial_id for r in archive.front] == ["s-t1", "s-t3"]
    assert not archive.add(result(4, status=TrialStatus.failed))


def test_equal_points_both_stay_but_a_trial_counts_once():
    archive = ParetoArchive(MIN2)
    assert archive.add(result(0, a=1.0, b=1.0))
    assert archive.add(result(1, a=1.0, b=1.0))
    assert not archive.add(result(1, a=1.0, b=1.0))
    assert len(archive.front) == 2
    assert archive.hypervolume([2.0, 2.0]) == 1.0


def test_directions_are_respected():
    archive = ParetoArchive(MIXED)
    archive.add(result(0, nll=2.0, acc=0.5))
    assert not archive.add(result(1, nll=2.0, acc=0.4))  # lower accuracy is worse
    assert archive.add(result(2, nll=2.0, acc=0.6))
    assert [r.trial_id for r in archive.front] == ["s-t2"]


def test_hypervolume_2d_by_hand():
    # Staircase (1,3) (2,2) (3,1) under (4,4): 3*1 + 2*1 + 1*1.
    points = [(1, 3), (2, 2), (3, 1)]
    assert hypervolume(points, [4, 4]) == 6.0
    assert hypervolume(points + [(2.5, 2.5), (2, 2)], [4, 4]) == 6.0  # dominated and duplicate
    assert hypervolume(points + [(0, 5), (4, 0)], [4, 4]) == 6.0  # outside / on the reference
    assert hypervolume([], [4, 4]) == 0.0


def test_hypervolume_3d_by_hand():
    assert hypervolume([(1, 1, 1)], [2, 2, 2]) == 1.0
    # Boxes of 2*2*1 and 1*1*2 overlapping in a unit cube.
    assert hypervolume([(0, 0, 1), (1, 1, 0)], [2, 2, 2]) == 5.0
    assert hypervolume([(0.5,)], [2.0]) == 1.5


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_hypervolume_matches_counting_unit_cells(dims):
    rng = random.Random(dims)
    size = 6
    points = [tuple(rng.randrange(size) for _ in range(dims)) for _ in range(12)]
    # A unit cell is covered when some point is <= its lower corner.
    cells = sum(
        any(all(p[i] <= c[i] for i in range(dims)) for p in points)
        for c in itertools.product(range(size), repeat=dims)
    )
    assert hypervolume(points, [size] * dims) == cells


