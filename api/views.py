"""What a search looks like to a reader: dicts shared by the JSON API, the status page
(through the API) and `recycle status`. The page shows these numbers as they come: it
derives no trial kinds and computes no macro-averages of its own."""

from __future__ import annotations

import statistics
import time

from api.history import search_history
from api.plotstyle import proposal_kind
from contracts import SearchStatus, TrialStatus
from contracts.liveness import LEASE_TTL_S
from proposer import Normalization, normalization_of, summarize_search
from proposer.normalize import REFERENCE, n_anchor_trials

# Throughput is measured over the most recent results, so it follows the current pace.
RATE_WINDOW = 20
# A running search with trials in flight looks stalled (no worker taking them?) after this
# long without a result, and at least STALL_TRIALS typical trial times: a guess, not tuned.
STALL_MIN_S = 120.0
STALL_TRIALS = 5


def trials_per_second(results) -> float | None:
    """Results per second over the last RATE_WINDOW results (by finish time); None until two."""
    times = sorted(r.finished_at for r in results if r.finished_at > 0)[-RATE_WINDOW:]
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (len(times) - 1) / (times[-1] - times[0])


# What the page calls the macro-average the view reports (proposer.normalize's scale).
MACRO_LABEL = "normalized macro (lower is better)"


def activity(results, status: str, in_flight: int, now: float) -> dict:
    """When the last result came and whether a running search seems to wait for a worker."""
    finished = [r.finished_at for r in results if r.finished_at > 0]
    last = max(finished, default=None)
    recent = [r.total_seconds for r in results[-RATE_WINDOW:] if r.total_seconds > 0]
    typical = statistics.median(recent) if recent else None
    idle = now - last if last is not None else None
    patience = max(STALL_MIN_S, STALL_TRIALS * (typical or 0.0))
    stalled = status == SearchStatus.running.value and in_flight > 0 and idle is not None and idle > patience
    return {"last_result_at": last, "idle_s": idle, "typical_trial_s": typical, "stalled_after_s": patience,
            "stalled": stalled}


def search_view(store, search_id: str, spec, stale_after_s: float = LEASE_TTL_S) -> dict:
    # The status before the history: the proposer records the last result, then marks the
    # search completed, so a reader that saw "completed" then reads every result (read the
    # other way round, a CI run saw "completed" with done 9 + failed 0 of 10).
    status = store.get_status(search_id).value
    proposals, results = store.proposals(search_id), store.results(search_id)
    summary = summarize_search(spec, proposals, results, with_hypervolume=False)
    points = search_history(store, search_id, spec)["points"]  # its hypervolume is counted incrementally
    summary["hypervolume"] = points[-1]["hypervolume"] if points else None
    needed = n_anchor_trials(spec)
    settled = len({r.proposal.number for r in results if r.proposal.number < needed})
    return {
        "id": search_id,
        "status": status,
        "pool": spec.pool.name,
        "checkpoints": spec.pool.names,
        # Weights per layer group: a trial's weights are this many x the checkpoints, group-major.
        "weight_groups": spec.merge.weights.n_groups,
        "strategy": spec.strategy,
        "budget": spec.budget,
        "concurrency": spec.concurrency,
        "objectives": [o.model_dump(mode="json") for o in spec.objectives],
        "trials_per_s": trials_per_second(results),
        **summary,
        "macro_label": MACRO_LABEL,
        # The scale (and the hypervolume) waits for these trials, the single checkpoints.
        "anchors": {"needed": needed, "settled": settled, "reference": REFERENCE},
        "activity": activity(results, status, summary["in_flight"], time.time()),
        "workers_alive": workers_alive(store, time.time(), stale_after_s),
    }


def workers_alive(store, now: float, stale_after_s: float = LEASE_TTL_S) -> int:
    """Worker processes whose heartbeat is fresh (contracts/liveness.py): none while trials
    are in flight means nobody is working on them."""
    return sum(w.alive(now, stale_after_s) for w in store.workers())


def trial_row(result, normalization: Normalization | None) -> dict:
    """One trial as the page lists and draws it: the stored result, its kind (single, uniform,
    greedy or trial; a "trial" on the front is drawn as front) and its normalized macros."""
    kind, checkpoint = proposal_kind(result.proposal.source)
    row = result.model_dump(mode="json")
    names = {o.name for o in normalization.objectives} if normalization else set()
    ok = result.status is TrialStatus.ok and normalization is not None
    row.update({
        "kind": kind,
        "checkpoint": checkpoint,
        "source_text": str(result.proposal.source),  # for people: "single:base", "greedy", "tpe"
        "macro_average": normalization.macro(result.scores) if ok and names <= set(result.scores) else None,
        "report_macro_average": normalization.macro(result.report) if ok and names <= set(result.report) else None,
    })
    return row


def trials_page(store, search_id: str, spec, offset: int, limit: int) -> dict:
    """A page of trial rows, in the order the store recorded them. `scaled` says whether the
    macros are on the normalized scale yet (a reader re-reads earlier rows once it is)."""
    results = store.results(search_id)
    normalization = normalization_of(spec, results)
    page = results[offset : offset + limit]
    return {"total": len(results), "offset": offset, "scaled": normalization is not None,
            "trials": [trial_row(r, normalization) for r in page]}
