"""Fixed baselines: singles, the uniform soup, and checkpoints shrunk towards it."""

from __future__ import annotations

import pytest

from contracts import MergeSpec
from proposer.baselines import fixed_baselines
from proposer.normalize import n_anchor_trials
from proposer.search import SearchDriver
from proposer.space import WeightSpace
from proposer.store import MemoryStore
from tests.proposer.search_fakes import make_spec


def test_shrunk_singles_move_each_checkpoint_a_tenth_of_the_way_to_the_uniform_soup():
    baselines = fixed_baselines(WeightSpace(make_spec(4)), shrink=0.1)
    sources = [str(source) for source, _ in baselines]
    assert sources[:5] == ["single:c0", "single:c1", "single:c2", "single:c3", "uniform"]
    assert sources[5:] == ["shrunk:c0", "shrunk:c1", "shrunk:c2", "shrunk:c3"]
    for j, (_, weights) in enumerate(baselines[5:]):
        assert weights == pytest.approx([0.9 + 0.025 if k == j else 0.025 for k in range(4)])
        assert sum(weights) == pytest.approx(1.0)


def test_no_shrunk_singles_by_default_and_none_for_the_task_arithmetic_base():
    assert [str(s) for s, _ in fixed_baselines(WeightSpace(make_spec(3)))] == ["single:c0", "single:c1", "single:c2", "uniform"]
    spec = make_spec(3, merge=MergeSpec(normalize=False, base="c0"))
    shrunk = [(s, w) for s, w in fixed_baselines(WeightSpace(spec), shrink=0.2) if s.kind == "shrunk"]
    assert [s.checkpoint for s, _ in shrunk] == ["c1", "c2"]
    # Task arithmetic adds the soup's task vectors on top: the checkpoint keeps its own whole.
    assert shrunk[0][1] == pytest.approx([0.0, 1.0, 0.1])


def test_the_driver_proposes_them_as_reference_trials_before_the_strategy():
    spec = make_spec(3, shrunk_singles=0.1, budget=12)
    driver = SearchDriver("s", spec, _store(spec))
    sources = [str(p.source) for p in driver.propose(7)]
    assert sources == ["single:c0", "single:c1", "single:c2", "uniform", "shrunk:c0", "shrunk:c1", "shrunk:c2"]
    assert n_anchor_trials(spec) == 3  # the singles set the scale


def _store(spec):
    store = MemoryStore()
    store.create_search("s", spec)
    return store
