"""Weights per layer group in the search: the space, the baselines, the strategies' blocks, the surrogate."""

from __future__ import annotations

import numpy as np
import pytest

from contracts import MergeSpec, WeightLayout
from proposer.baselines import fixed_baselines
from proposer.prescreen import HypervolumePrescreen
from proposer.search import SearchDriver
from proposer.space import WeightSpace
from proposer.store import MemoryStore
from proposer.strategies import make_strategy
from proposer.surrogate import MAX_WEIGHTS
from tests.proposer.search_fakes import make_spec, ok, run, toy_scores

LAYOUT = WeightLayout(per="layer_groups", groups=3)


def grouped_spec(n: int = 4, base: str | None = None, **fields):
    merge = MergeSpec(normalize=base is None, base=base, weights=LAYOUT)
    return make_spec(n, merge=merge, **fields)


def test_space_maps_blocks_group_major_and_leaves_the_base_out_of_every_group():
    space = WeightSpace(grouped_spec(3, base="c1"))
    assert (space.groups, space.block, space.dim) == (3, 2, 6)
    x = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
    assert space.to_pool(x) == (0.1, 0.0, 0.2, 0.3, 0.0, 0.4, 0.5, 0.0, 0.6)
    assert space.to_strategy(space.to_pool(x)) == x
    assert space.everywhere((0.7, 0.8)) == (0.7, 0.0, 0.8) * 3
    assert space.common((0.7, 0.8) * 3) == (0.7, 0.8) and space.common(x) is None
    with pytest.raises(ValueError, match="5 strategy coordinates for 3 group"):
        space.to_pool(x[:5])


def test_baselines_are_whole_model_merges_repeated_in_every_group():
    space = WeightSpace(grouped_spec(3))
    baselines = {str(source): weights for source, weights in fixed_baselines(space, shrink=0.1)}
    assert baselines["single:c1"] == (0.0, 1.0, 0.0) * 3
    assert baselines["uniform"] == (1 / 3, 1 / 3, 1 / 3) * 3
    assert baselines["shrunk:c0"] == pytest.approx((0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3) * 3)
    plain = {str(s): w for s, w in fixed_baselines(WeightSpace(make_spec(3)), shrink=0.1)}
    assert {k: v[:3] for k, v in baselines.items()} == plain


@pytest.mark.parametrize("name", ["random", "tpe", "cmaes"])
def test_each_strategy_puts_every_block_on_its_own_simplex_and_restores(name):
    strategy = make_strategy(name, 12, seed=3, normalize=True, blocks=3)
    rng = np.random.default_rng(0)
    for number in range(40):
        [weights] = strategy.ask([number])
        blocks = np.reshape(weights, (3, 4))
        assert np.allclose(blocks.sum(axis=1), 1.0) and (blocks >= 0).all()
        strategy.tell(number, weights, float(rng.random()))
    again = make_strategy(name, 12, seed=3, normalize=True, blocks=3)
    again.restore(list(strategy.proposed.items()), [(n, w, f) for n, (w, f) in strategy.told.items()])
    assert again.sample(40) == strategy.sample(40)  # the same state rebuilt from the stored weights
    spread = np.array([strategy.proposed[n] for n in range(40)]).reshape(40, 3, 4)
    assert not np.allclose(spread[:, 0], spread[:, 1])  # the blocks are searched independently


def test_blocks_must_divide_the_weights_and_hold_two_on_the_simplex():
    with pytest.raises(ValueError, match="do not split into 3 blocks"):
        make_strategy("tpe", 8, seed=0, normalize=True, blocks=3)
    with pytest.raises(ValueError, match="nothing to search with 1 weight"):
        make_strategy("random", 3, seed=0, normalize=True, blocks=3)


def test_a_grouped_search_runs_to_its_budget_with_baselines_greedy_soup_and_probes():
    spec = grouped_spec(4, budget=40, dominance_probes=6)
    store = MemoryStore()
    store.create_search("g", spec)
    driver = SearchDriver("g", spec, store)
    # Conflicting tasks on the mean over groups: the singles c0 and c3 stay on the front, so probes aim at them.
    run(driver, lambda p: ok(p, toy_scores(np.reshape(p.weights, (3, 4)).mean(axis=0))))
    proposals = driver.store.proposals("g")
    assert len(proposals) == 40 and all(len(p.weights) == 12 for p in proposals)
    kinds = {p.source.kind for p in proposals}
    assert {"single", "uniform", "greedy", "probe", "tpe"} <= kinds
    for p in proposals:
        blocks = np.reshape(p.weights, (3, 4))
        assert np.allclose(blocks.sum(axis=1), 1.0)
        if p.source.kind != "tpe":  # baselines, greedy soup and probes: the same weights in every group
            assert (blocks == blocks[0]).all(), p.source
    assert any(not (np.reshape(p.weights, (3, 4)) == np.reshape(p.weights, (3, 4))[0]).all()
               for p in proposals if p.source.kind == "tpe")
    # A restarted driver rebuilds the same strategy from the stored grouped weights.
    resumed = SearchDriver("g", spec, driver.store)
    assert resumed.strategy.told.keys() == driver.strategy.told.keys()


def test_the_quadratic_surrogate_is_fitted_up_to_max_weights_and_skipped_above():
    rng = np.random.default_rng(1)

    def observed(groups: int, n: int, trials: int):
        x = np.concatenate([rng.dirichlet(np.ones(n), size=trials) for _ in range(groups)], axis=1)
        return [(tuple(row), [float(row[0]), float(row[-1])]) for row in x]

    small = observed(3, 4, 30)  # 12 weights: the quadratic on the product of simplices is fitted
    screen = HypervolumePrescreen(small, [], on_simplex=True)
    assert screen.surrogate is not None
    assert screen.surrogate.predict(np.array([small[0][0]])).shape == (1, 2)
    n = MAX_WEIGHTS // 4 + 1  # 4 groups x 9 checkpoints = 36 > MAX_WEIGHTS: no model, the strategy's own pick
    large = observed(4, n, 200)
    screen = HypervolumePrescreen(large, [], on_simplex=True)
    assert screen.surrogate is None and screen.pick([large[0][0], large[1][0]]) == 0
    cma = make_strategy("cmaes", 4 * n, seed=0, normalize=True, surrogate=True, blocks=4)
    assert not cma._use_model  # lq-CMA-ES without its model: plain CMA-ES


def test_proposals_carry_up_to_max_proposal_weights_and_larger_layouts_are_refused():
    from contracts.models import MAX_PROPOSAL_WEIGHTS

    spec = make_spec(16, merge=MergeSpec(weights=WeightLayout(per="layer_groups", groups=24)), budget=20)
    store = MemoryStore()
    store.create_search("wide", spec)
    proposals = SearchDriver("wide", spec, store).propose(20)  # 384 weights each, more than a pool's 256 checkpoints
    assert len(proposals) == 20 and {len(p.weights) for p in proposals} == {24 * 16}
    groups = MAX_PROPOSAL_WEIGHTS // 16 + 1
    with pytest.raises(ValueError, match=f"{groups} layer groups x 16 checkpoints"):
        make_spec(16, merge=MergeSpec(weights=WeightLayout(per="layer_groups", groups=groups)))
