"""One search: which trial to run next, and what the results so far add up to.

`SearchDriver` knows nothing of threads, Celery or Redis; a runtime calls
`propose` when workers are free and `record` when results come back. All its
state is rebuilt from the store on construction, so a restarted proposer resumes
where the last one stopped.

Trial order: the fixed baselines (each single checkpoint, then the uniform soup),
then strategy proposals, with the greedy soup's steps slotted in as soon as the
step before returned (each needs its predecessor's result). In the last
`spec.dominance_probes` trials, probes at the singles no result dominates yet come
first (proposer.dominance). With `spec.surrogate`,
TPE and CMA-ES offer several candidates per ask and a quadratic surrogate of the
tasks picks the one predicted to add most hypervolume (proposer.prescreen), or,
every `spec.exploit_every` asks, the one predicted best on the macro-average where the
surrogate is confident it beats the best seen.
"""

from __future__ import annotations

import threading
from typing import Literal, Sequence

import numpy as np

from contracts import Proposal, SearchSpec, TrialResult, TrialStatus
from proposer.baselines import fixed_baselines, greedy_candidate, soup_weights
from proposer.dominance import dominance_probe
from proposer.normalize import Normalization, n_anchor_trials, normalization_of
from proposer.pareto import ParetoArchive
from proposer.prescreen import HypervolumePrescreen
from proposer.scalarize import Scalarizer, loss_vector
from proposer.space import WeightSpace
from proposer.store import SearchStore
from proposer.strategies import make_strategy
from proposer.strategies.base import Weights, derived_seed

Scalarization = Literal["mean", "parego"]
# Key that keeps ParEGO's weight draws independent of the strategy's draws.
_PAREGO_STREAM = 1


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

    scalarization: "mean" tells every strategy the macro-average. "parego" also
    draws Chebyshev weights ~ Dirichlet(1) for every ask and relabels the whole
    history with them first (strategies that cannot relabel, CMA-ES and random,
    keep the macro-average).

    The first trials, one per pool checkpoint (the singles when baselines are on), are
    the anchors of the normalized scale (proposer.normalize): strategies are told the
    normalized macro-average, so results that return before every anchor has settled are
    told once it has, in the order they came. (ParEGO scales objectives over every
    result so far, see `_relabel`.)
    """

    def __init__(
        self,
        search_id: str,
        spec: SearchSpec,
        store: SearchStore,
        scalarization: Scalarization = "mean",
    ):
        if scalarization not in ("mean", "parego"):
            raise ValueError(f"unknown scalarization {scalarization!r}; known: mean, parego")
        self.search_id = search_id
        self.spec = spec
        self.store = store
        self.scalarization = scalarization
        self.objectives = spec.objectives
        self.space = WeightSpace(spec)
        self.strategy = make_strategy(spec.strategy, self.space.dim, spec.seed, self.space.normalize, spec.max_weight)
        self._baselines = fixed_baselines(self.space, spec.shrunk_singles) if spec.baselines else []
        self.n_anchors = n_anchor_trials(spec)
        self.normalization: Normalization | None = None
        self._untold: list[TrialResult] = []  # results waiting for the scale before the strategy hears of them
        self._proposals: dict[int, Proposal] = {}
        self._results: dict[int, TrialResult] = {}  # in the order they were taken in
        # Per ok trial: (strategy weights, loss vector), what the pre-screening surrogate reads.
        self._points: dict[int, tuple[Weights, list[float]]] = {}
        self._archive = ParetoArchive(self.objectives)
        self._lock = threading.RLock()
        self._resume()

    def _resume(self) -> None:
        proposals = self.store.proposals(self.search_id)
        results = self.store.results(self.search_id)
        self._proposals = {p.number: p for p in proposals}
        for result in results:
            self._take(result)
        told = results if self.normalization is not None else []
        self._untold = [] if self.normalization is not None else list(results)
        self.strategy.restore(
            [(p.number, self.space.to_strategy(p.weights)) for p in proposals if p.source == self.strategy.name],
            [self._observation(r) for r in told],
        )

    # -- proposing --------------------------------------------------------------

    def propose(self, n: int) -> list[Proposal]:
        """Up to n new proposals (fewer once the budget is spent), stored before returned."""
        made = []
        with self._lock:
            while len(made) < n and len(self._proposals) < self.spec.budget:
                number = len(self._proposals)  # numbers run 0, 1, 2, ...
                source, weights = self._next(number)
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

    def _next(self, number: int) -> tuple[str, Weights]:
        if number < len(self._baselines):
            return self._baselines[number]
        members = self._greedy_members()
        if members is not None:
            return "greedy", self.space.to_pool(soup_weights(members, self.space.dim))
        if number >= self.spec.budget - self.spec.dominance_probes:
            probe = self._dominance_probe()
            if probe is not None:
                return probe
        if self.scalarization == "parego":
            self._relabel(number)
        pick = None
        if self.spec.surrogate and self.strategy.n_candidates > 1:
            # Hypervolume picks spread the trials along the front; alone they left the best
            # macro-average to the greedy soup on the SmolLM2 pool (held-out -0.012 / -0.008
            # for TPE / CMA-ES, significant); exploiting asks cut that to -0.004 / -0.002
            # (the hypervolume tradeoff: see SearchOptions.exploit_every).
            exploit = self.spec.exploit_every > 0 and number % self.spec.exploit_every == 0

            # Fitted only when the strategy offers candidates (TPE's random startup does not).
            def pick(candidates: Sequence[Weights]) -> int:
                screen = self._prescreen()
                chosen = screen.pick_exploiting(candidates) if exploit else None
                return screen.pick(candidates) if chosen is None else chosen
        [x] = self.strategy.ask([number], pick=pick)
        return self.strategy.name, self.space.to_pool(x)

    def _prescreen(self) -> HypervolumePrescreen:
        """A surrogate of every task, fitted to the results so far (see proposer.prescreen)."""
        return HypervolumePrescreen(self._observed(), self._pending_weights(), on_simplex=self.space.normalize,
                                    front=self._front_losses())

    def _observed(self) -> list[tuple[Weights, list[float]]]:
        """(strategy weights, loss vector) of every ok trial, in trial order."""
        return [self._points[n] for n in sorted(self._points)]

    def _pending_weights(self) -> list[Weights]:
        return [self.space.to_strategy(p.weights) for n, p in self._proposals.items() if n not in self._results]

    def _front_losses(self) -> list[list[float]]:
        return [self._points[r.proposal.number][1] for r in self._archive.front]

    def _dominance_probe(self) -> tuple[str, Weights] | None:
        """The end game's next probe at a single checkpoint no result dominates (proposer.dominance)."""
        if not self.spec.baselines:
            return None
        # Singles are the first trials, numbered by pool index.
        singles = {j: self._points[i][1] for j, i in enumerate(self.space.searched) if i in self._points}
        aimed = dominance_probe(singles, self._front_losses(), self._observed(), self._pending_weights(),
                                dim=self.space.dim, on_simplex=self.space.normalize)
        if aimed is None:
            return None
        single, weights = aimed
        return f"probe:{self.space.names[self.space.searched[single]]}", self.space.to_pool(weights)

    def _greedy_members(self) -> tuple[int, ...] | None:
        """Members of the greedy soup's next step if it can be proposed now."""
        if not self.spec.baselines:
            return None
        # Singles are the first trials, numbered by pool index.
        singles = [self._results.get(i) for i in self.space.searched]
        steps = [p for _, p in sorted(self._proposals.items()) if p.source == "greedy"]
        step_results = [self._results.get(p.number) for p in steps]
        if None in singles or None in step_results:
            return None
        return greedy_candidate(
            [self._loss(r) for r in singles], [self._loss(r) for r in step_results]
        )

    def _relabel(self, number: int) -> None:
        rng = np.random.default_rng(derived_seed(self.spec.seed, number, _PAREGO_STREAM))
        lam = rng.dirichlet(np.ones(len(self.objectives)))
        # Scaled over every result so far, not just the baselines: a merge better than every
        # baseline would get a negative value, and a larger weight on a negative value rewards
        # being worse there (the Chebyshev max then picks the wrong objective).
        ok = {n: r for n, r in self._results.items() if r.status is TrialStatus.ok}
        scalarizer = Scalarizer(self.objectives, [r.scores for r in ok.values()])
        self.strategy.relabel({n: scalarizer.chebyshev(r.scores, lam) for n, r in ok.items()})

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


def summarize_search(spec: SearchSpec, proposals: Sequence[Proposal], results: Sequence[TrialResult]) -> dict:
    """A search's progress from its stored history alone (no strategy is rebuilt): for readers
    such as the API, which must not pay for replaying a search on every request."""
    return summarize(spec, proposals, results, normalization_of(spec, results))


def summarize(spec: SearchSpec, proposals: Sequence[Proposal], results: Sequence[TrialResult],
              normalization: Normalization | None) -> dict:
    """Counts, the best trial by normalized macro-average, the front and its hypervolume
    (normalized objectives, reference point proposer.normalize.REFERENCE on each)."""
    archive = ParetoArchive(spec.objectives)
    for result in results:
        archive.add(result)
    ok = [r for r in results if r.status is TrialStatus.ok]
    best = best_by_macro(results, normalization)
    hypervolume = None
    if normalization is not None:
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
        "source": result.proposal.source,
        "weights": list(result.proposal.weights),
        "macro_average": normalization.macro(result.scores),
        "report_macro_average": normalization.macro(result.report) if has_report else None,
        "scores": dict(result.scores),
        "report": dict(result.report),
    }
