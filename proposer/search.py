"""One search: which trial to run next, and what the results so far add up to.

`SearchDriver` knows nothing of threads, Celery or Redis; a runtime calls
`propose` when workers are free and `record` when results come back. All its
state is rebuilt from the store on construction, so a restarted proposer resumes
where the last one stopped.

The next trial comes from the spec's proposal sources, asked in order, the first
offer winning (proposer.sources): the fixed baselines, the greedy soup's next step,
dominance probes in the last trials, and the strategy, pre-screened by the surrogate
or not. The driver books proposals and results and tells the strategy the results.
"""

from __future__ import annotations

import threading
from typing import Literal, Sequence

from contracts import Proposal, SearchSpec, TrialResult, TrialStatus
from proposer.history import History
from proposer.normalize import Normalization, n_anchor_trials, normalization_of
from proposer.pareto import ParetoArchive
from proposer.scalarize import loss_vector
from proposer.sources import sources_for
from proposer.space import WeightSpace
from proposer.store import SearchStore
from proposer.strategies import make_strategy
from proposer.strategies.base import Strategy, Weights


def best_by_macro(
    results: Sequence[TrialResult],
    normalization: Normalization | None,
    split: Literal["scores", "report"] = "scores",
) -> TrialResult | None:
    """The ok result with the lowest normalized macro-average on that split (first one on ties;
    None before the scale is known). Results lacking an objective on that split are skipped."""
    if normalization is None:
        return None
    names = {o.name for o in normalization.objectives}
    scored = [
        r for r in results if r.status is TrialStatus.ok and names <= set(getattr(r, split))
    ]
    return min(scored, key=lambda r: normalization.macro(getattr(r, split)), default=None)


class SearchDriver:
    """Proposals and results of one search.

    The first trials, one per pool checkpoint (the singles when baselines are on), are
    the anchors of the normalized scale (proposer.normalize): strategies are told the
    normalized macro-average, so results that return before every anchor has settled are
    told once it has, in the order they came.
    """

    def __init__(self, search_id: str, spec: SearchSpec, store: SearchStore, strategy: Strategy | None = None):
        """`strategy`: one to use instead of the spec's (a benchmark's external sampler behind
        the Strategy interface); the spec's baselines, probes and surrogate still apply."""
        self.search_id = search_id
        self.spec = spec
        self.store = store
        self.objectives = spec.objectives
        self.space = WeightSpace(spec)
        self.strategy = strategy or make_strategy(spec.strategy, self.space.dim, spec.seed, self.space.normalize,
                                                  spec.max_weight, spec.algorithm.candidates, spec.surrogate,
                                                  blocks=self.space.groups)
        self.sources = sources_for(spec, self.space, self.strategy)
        self.n_anchors = n_anchor_trials(spec)
        self.normalization: Normalization | None = None
        self._untold: list[TrialResult] = []  # results waiting for the scale before the strategy hears of them
        self._proposals: dict[int, Proposal] = {}
        self._results: dict[int, TrialResult] = {}  # in the order they were taken in
        # Per ok trial: (strategy weights, loss vector), what the pre-screening surrogate reads.
        self._points: dict[int, tuple[Weights, list[float]]] = {}
        self._archive = ParetoArchive(self.objectives)
        self.history = History(self.space, self._proposals, self._results, self._points, self._archive, self._loss)
        self._lock = threading.RLock()
        self._resume()

    def _resume(self) -> None:
        proposals = self.store.proposals(self.search_id)
        results = self.store.results(self.search_id)
        self._proposals.update((p.number, p) for p in proposals)
        for result in results:
            self._take(result)
        told = results if self.normalization is not None else []
        self._untold = [] if self.normalization is not None else list(results)
        self.strategy.restore(
            [(p.number, self.space.to_strategy(p.weights)) for p in proposals if p.source.kind == self.strategy.name],
            [self._observation(r) for r in told],
        )

    # -- proposing --------------------------------------------------------------

    def propose(self, n: int) -> list[Proposal]:
        """Up to n new proposals (fewer once the budget is spent), stored before returned."""
        made = []
        with self._lock:
            while len(made) < n and len(self._proposals) < self.spec.budget:
                number = len(self._proposals)  # numbers run 0, 1, 2, ...
                # The strategy source always offers, so some source does.
                source, weights = next(o for s in self.sources if (o := s.offer(number, self.history)) is not None)
                proposal = Proposal(
                    search_id=self.search_id,
                    trial_id=Proposal.make_trial_id(self.search_id, number),
                    number=number,
                    weights=weights,
                    source=source,
                )
                self.store.add_proposal(proposal)
                self._proposals[number] = proposal
                made.append(proposal)
        return made

    # -- results ----------------------------------------------------------------

    def record(self, result: TrialResult) -> bool:
        """Take in one result; False if this driver already has it.

        The store keeps the first result per trial. One already stored by another
        process (a worker that records its own results) is taken in from the store.
        """
        if result.search_id != self.search_id:
            raise ValueError(f"result of search {result.search_id!r} sent to search {self.search_id!r}")
        if result.status is TrialStatus.ok:
            loss_vector(result.scores, self.objectives)  # every objective scored, or ValueError
        with self._lock:
            number = result.proposal.number
            if self._proposals.get(number) != result.proposal:
                raise ValueError(f"result of trial {result.trial_id!r}, which this search did not propose")
            if number in self._results:
                return False
            if not self.store.record_result(result):
                result = self.store.get_result(self.search_id, result.trial_id) or result
            self._take(result)
            # Told in the order they came, once the scale is known (at once after the anchors).
            self._untold.append(result)
            if self.normalization is not None:
                for waiting in self._untold:
                    self.strategy.tell(*self._observation(waiting))
                self._untold = []
            return True

    def _take(self, result: TrialResult) -> None:
        """Book a result everywhere except in the strategy."""
        number = result.proposal.number
        self._results[number] = result
        if result.status is TrialStatus.ok:
            self._points[number] = (self.space.to_strategy(result.proposal.weights), loss_vector(result.scores, self.objectives))
            self._archive.add(result)
        if self.normalization is None and all(i in self._results for i in range(self.n_anchors)):
            self.normalization = normalization_of(self.spec, list(self._results.values()))

    def _observation(self, result: TrialResult) -> tuple[int, Weights, float | None]:
        weights = self.space.to_strategy(result.proposal.weights)
        return result.proposal.number, weights, self._loss(result)

    def _loss(self, result: TrialResult) -> float | None:
        if result.status is not TrialStatus.ok or self.normalization is None:
            return None
        return self.normalization.macro(result.scores)

    # -- progress ---------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._proposals) - len(self._results)

    @property
    def finished(self) -> bool:
        """Every trial of the budget has been proposed and has its result."""
        with self._lock:
            return len(self._proposals) >= self.spec.budget and self.in_flight == 0

    def pending(self) -> list[Proposal]:
        """Proposals still waiting for their result, by number."""
        with self._lock:
            return [p for n, p in sorted(self._proposals.items()) if n not in self._results]

    def summary(self) -> dict:
        with self._lock:
            return summarize(self.spec, list(self._proposals.values()), list(self._results.values()), self.normalization)


def summarize_search(spec: SearchSpec, proposals: Sequence[Proposal], results: Sequence[TrialResult],
                     with_hypervolume: bool = True) -> dict:
    """A search's progress from its stored history alone (no strategy is rebuilt): for readers
    such as the API, which must not pay for replaying a search on every request. An exact
    hypervolume of a large front of 4+ objectives takes seconds: a reader that polls keeps its
    own incremental count (api.history) and passes with_hypervolume=False."""
    return summarize(spec, proposals, results, normalization_of(spec, results), with_hypervolume)


def summarize(spec: SearchSpec, proposals: Sequence[Proposal], results: Sequence[TrialResult],
              normalization: Normalization | None, with_hypervolume: bool = True) -> dict:
    """Counts, the best trial by normalized macro-average, the front and its hypervolume
    (normalized objectives, reference point proposer.normalize.REFERENCE on each)."""
    archive = ParetoArchive(spec.objectives)
    for result in results:
        archive.add(result)
    ok = [r for r in results if r.status is TrialStatus.ok]
    best = best_by_macro(results, normalization)
    hypervolume = None
    if normalization is not None and with_hypervolume:
        hypervolume = archive.hypervolume(normalization.reference, normalization.losses)
    return {
        "proposed": len(proposals),
        "done": len(ok),
        "failed": len(results) - len(ok),
        "in_flight": len(proposals) - len(results),
        "best": describe(best, normalization) if best else None,
        "hypervolume": hypervolume,
        "reference_point": normalization.reference if normalization else None,
        "normalization": normalization.as_dict() if normalization else None,
        "front": [r.trial_id for r in archive.front],
    }


def describe(result: TrialResult, normalization: Normalization) -> dict:
    """A trial as readers show it: normalized macro-averages, raw scores per task."""
    names = {o.name for o in normalization.objectives}
    has_report = names <= set(result.report)
    return {
        "trial_id": result.trial_id,
        "source": str(result.proposal.source),
        "kind": result.proposal.source.kind,
        "checkpoint": result.proposal.source.checkpoint,
        "weights": list(result.proposal.weights),
        "macro_average": normalization.macro(result.scores),
        "report_macro_average": normalization.macro(result.report) if has_report else None,
        "scores": dict(result.scores),
        "report": dict(result.report),
    }
