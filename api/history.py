"""A search over time: after each settled trial, the best normalized macro so far and the
front's hypervolume. What the status page's progress chart draws, for one search or two
overlaid (both on the normalized scale of their own single checkpoints, which is the same
scale for two searches on one pool and task set)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from contracts import TrialStatus
from proposer import Normalization, ParetoArchive, normalization_of


@dataclass
class _Trace:
    """The history of one search's first `len(points)` results, and where it stood after them."""
    normalization: Normalization
    archive: ParetoArchive
    points: list[dict] = field(default_factory=list)
    best: float | None = None
    hypervolume: float = 0.0


# One trace per search, extended as results come (results are append-only and the scale is
# fixed once known), so a poll costs the new results only. Per API process, never shared.
_traces: dict[str, _Trace] = {}
_lock = threading.Lock()
_MAX_TRACES = 64


def _extend(trace: _Trace, results) -> None:
    scale = trace.normalization
    for result in results[len(trace.points):]:
        ok = result.status is TrialStatus.ok
        if ok:
            macro = scale.macro(result.scores)
            trace.best = macro if trace.best is None else min(trace.best, macro)
            if trace.archive.add(result):  # the volume changes only when the front does
                trace.hypervolume = trace.archive.hypervolume(scale.reference, scale.losses)
        trace.points.append({"settled": len(trace.points) + 1, "number": result.proposal.number,
                             "trial_id": result.trial_id, "ok": ok, "best_macro": trace.best,
                             "hypervolume": trace.hypervolume})


def search_history(store, search_id: str, spec) -> dict:
    """{"points": [...], "normalization": ...}; no points before the single checkpoints are scored."""
    results = store.results(search_id)
    normalization = normalization_of(spec, results)
    if normalization is None:
        return {"id": search_id, "points": [], "normalization": None}
    with _lock:
        trace = _traces.get(search_id)
        if trace is None or trace.normalization != normalization or len(trace.points) > len(results):
            if len(_traces) >= _MAX_TRACES:
                _traces.pop(next(iter(_traces)))
            trace = _traces[search_id] = _Trace(normalization, ParetoArchive(spec.objectives))
        _extend(trace, results)
        points = list(trace.points)
    return {"id": search_id, "points": points, "normalization": normalization.as_dict()}
