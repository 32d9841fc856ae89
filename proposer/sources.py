"""Proposal sources: the parts a search's next trial comes from, composed like Optuna's samplers.

The driver asks its sources in order for trial `number`; the first that offers a proposal
wins, and a source that has nothing to offer now (a greedy step waiting for its
predecessor, a probe line waiting for a result) returns None. `sources_for(spec, ...)`
builds the list a spec asks for:

    FixedBaselines   every single checkpoint, the uniform soup, shrunk singles (numbers 0..k-1)
    GreedySoup       the greedy soup's next step, as soon as the step before has returned
    DominanceProbes  in the last `dominance_probes` trials, probes at undominated singles
    StrategySource   the strategy's own proposal; or, with the surrogate, Prescreened: the
                     strategy's candidates, one chosen by the surrogate (proposer.prescreen),
                     unless the strategy uses the surrogate itself (CMA-ES: lq-CMA-ES)

The strategy source always offers, so the list ends with it. Every source is
deterministic in the history, which is what lets a restarted driver carry on exactly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

from contracts import SearchSpec, Source
from proposer.baselines import fixed_baselines, greedy_candidate, soup_weights
from proposer.dominance import dominance_probe
from proposer.history import History
from proposer.prescreen import HypervolumePrescreen
from proposer.space import WeightSpace
from proposer.strategies.base import Strategy, Weights

Offer = tuple[Source, Weights]  # (who proposes, pool weights)


class ProposalSource(ABC):
    @abstractmethod
    def offer(self, number: int, history: History) -> Offer | None:
        """A proposal for trial `number`, or None to let the next source offer."""


class FixedBaselines(ProposalSource):
    """The paper's fixed baselines, in order, as the first trials (proposer.baselines)."""

    def __init__(self, baselines: Sequence[Offer]):
        self.baselines = list(baselines)

    def offer(self, number: int, history: History) -> Offer | None:
        return self.baselines[number] if number < len(self.baselines) else None


class GreedySoup(ProposalSource):
    """The greedy soup (Wortsman et al., 2022): each step needs its predecessor's result."""

    def offer(self, number: int, history: History) -> Offer | None:
        singles = history.single_results()
        step_results = [history.results.get(p.number) for p in history.of_kind("greedy")]
        if None in singles or None in step_results:
            return None
        members = greedy_candidate([history.loss(r) for r in singles], [history.loss(r) for r in step_results])
        if members is None:
            return None
        return Source(kind="greedy"), history.space.everywhere(soup_weights(members, history.space.block))


class DominanceProbes(ProposalSource):
    """The end game: in the last `n_probes` trials of `budget`, a probe at the next single
    checkpoint no result dominates yet (proposer.dominance)."""

    def __init__(self, budget: int, n_probes: int):
        self.first = budget - n_probes

    def offer(self, number: int, history: History) -> Offer | None:
        if number < self.first:
            return None
        space = history.space
        # Probe lines run through whole-model merges: a trial with different weights per layer
        # group lies on no line (it still counts in the front).
        observed = [(w, losses) for x, losses in history.observed() if (w := space.common(x)) is not None]
        pending = [w for x in history.pending_weights() if (w := space.common(x)) is not None]
        aimed = dominance_probe(history.single_losses(), history.front_losses(), observed,
                                pending, dim=space.block, on_simplex=space.normalize)
        if aimed is None:
            return None
        single, weights = aimed
        return Source(kind="probe", checkpoint=space.names[space.searched[single]]), space.everywhere(weights)


class StrategySource(ProposalSource):
    """The strategy's own favourite for the trial."""

    def __init__(self, strategy: Strategy):
        self.strategy = strategy

    def offer(self, number: int, history: History) -> Offer:
        return self._propose(number, self.strategy.sample(number, 1)[0], history)

    def _propose(self, number: int, weights: Weights, history: History) -> Offer:
        self.strategy.propose(number, weights)
        return Source(kind=self.strategy.name), history.space.to_pool(weights)


class Prescreened(StrategySource):
    """The strategy draws `strategy.n_candidates` candidates; a quadratic surrogate of every
    task, fitted to the results so far, picks the one whose lower confidence bound adds most
    hypervolume to the front (proposer.prescreen)."""

    def offer(self, number: int, history: History) -> Offer:
        candidates = self.strategy.sample(number, self.strategy.n_candidates)
        if len(candidates) == 1:  # no choice offered (TPE's random startup): nothing to fit
            return self._propose(number, candidates[0], history)
        screen = HypervolumePrescreen(history.observed(), history.pending_weights(),
                                      on_simplex=history.space.normalize, front=history.front_losses())
        return self._propose(number, candidates[screen.pick(candidates)], history)


def sources_for(spec: SearchSpec, space: WeightSpace, strategy: Strategy) -> list[ProposalSource]:
    """The ordered sources a spec asks for (the first offer wins)."""
    sources: list[ProposalSource] = []
    if spec.baselines:
        sources += [FixedBaselines(fixed_baselines(space, spec.shrunk_singles)), GreedySoup()]
        if spec.dominance_probes:
            sources.append(DominanceProbes(spec.budget, spec.dominance_probes))
    screened = spec.surrogate and strategy.n_candidates > 1 and not strategy.ranks_population
    sources.append(Prescreened(strategy) if screened else StrategySource(strategy))
    return sources
