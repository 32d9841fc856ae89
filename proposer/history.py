"""What a search has proposed and got back, as the proposal sources read it.

The driver (proposer.search) owns the dicts and books every proposal and result; a
`History` is a read-only view over them, so a source (proposer.sources) sees exactly
what the driver knows and keeps no copy that could drift.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from contracts import Proposal, TrialResult
from proposer.pareto import ParetoArchive
from proposer.space import WeightSpace
from proposer.strategies.base import Weights


class History:
    """`proposals` and `results` by trial number; `points`: per ok trial (strategy weights,
    loss vector); `archive`: the ok results' Pareto front; `loss`: the scalar a result is
    judged by (the macro-average; None for a failure)."""

    def __init__(
        self,
        space: WeightSpace,
        proposals: Mapping[int, Proposal],
        results: Mapping[int, TrialResult],
        points: Mapping[int, tuple[Weights, list[float]]],
        archive: ParetoArchive,
        loss: Callable[[TrialResult], float | None],
    ):
        self.space = space
        self.proposals = proposals
        self.results = results
        self.points = points
        self.archive = archive
        self.loss = loss

    def observed(self) -> list[tuple[Weights, list[float]]]:
        """(strategy weights, loss vector) of every ok trial, in trial order."""
        return [self.points[n] for n in sorted(self.points)]

    def pending_weights(self) -> list[Weights]:
        """Strategy weights of the trials in flight."""
        return [self.space.to_strategy(p.weights) for n, p in self.proposals.items() if n not in self.results]

    def front_losses(self) -> list[list[float]]:
        return [self.points[r.proposal.number][1] for r in self.archive.front]

    def of_kind(self, kind: str) -> list[Proposal]:
        """The proposals of one source kind, by number."""
        return [p for _, p in sorted(self.proposals.items()) if p.source.kind == kind]

    def single_losses(self) -> dict[int, list[float]]:
        """Loss vector per searched index of each single checkpoint with an ok result
        (with baselines the singles are the first trials, numbered by pool index)."""
        return {j: self.points[i][1] for j, i in enumerate(self.space.searched) if i in self.points}

    def single_results(self) -> Sequence[TrialResult | None]:
        """Per searched checkpoint, its single's result (None while in flight)."""
        return [self.results.get(i) for i in self.space.searched]
