"""The proposer proposes what it proposed when the fixture was recorded: same weights, same
order, same sources, for every proposal source (see proposal_fixture.py for the cases and
how the fixture is recorded from an older commit)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.proposer.proposal_fixture import CASES, record

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "proposals.json").read_text())


def test_the_fixture_covers_every_case_and_every_source():
    assert set(FIXTURE) == set(CASES)
    kinds = {source.split(":")[0] for proposals in FIXTURE.values() for _, source, _ in proposals}
    assert kinds == {"single", "uniform", "greedy", "shrunk", "probe", "tpe", "cmaes", "random"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_spec_and_seed_give_the_recorded_proposals(name):
    expected, got = FIXTURE[name], record(name)
    assert [(n, s) for n, s, _ in got] == [(n, s) for n, s, _ in expected]
    for (number, _, weights), (_, _, recorded) in zip(got, expected):
        assert weights == pytest.approx(recorded, abs=1e-9, rel=0), f"trial {number}"
