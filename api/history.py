"""A search over time: after each settled trial, the best normalized macro so far and the
front's hypervolume. What the status page's progress chart draws, for one search or two
overlaid (both on the normalized scale of their own single checkpoints, which is the same
scale for two searches on one pool and task set)."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

from contracts import TrialStatus
from proposer import Normalization, ParetoArchive, hypervolume, normalization_of
from proposer.pareto import non_dominated


@dataclass
class _Trace:
    """The history of one search's first `len(points)` results, and where it stood after them."""
    normalization: Normalization
    archive: ParetoArchive
    points: list[dict] = field(default_factory=list)
    best: float | None = None
    hypervolume: float = 0.0
    front: dict[str, tuple[float, ...]] = field(default_factory=dict)  # trial id -> normalized losses


# One trace per search, extended as results come (results are append-only and the scale is
# fixed once known), so a poll costs the new results only. Per API process, never shared.
_traces: dict[str, _Trace] = {}
_lock = threading.Lock()
_MAX_TRACES = 64


def gain(point, front, reference) -> float:
    """What `point` adds to the hypervolume of `front`: its own box less the part of it the
    front already covers (the front's points limited to the box). A full recount after every
    new front member cost ~50 s over 200 trials of a 4-objective search; this, a small
    hypervolume per new member."""
    box = math.prod(max(0.0, r - x) for x, r in zip(point, reference))
    if box == 0.0 or not front:
        return box
    limited = np.maximum(np.asarray(front, dtype=float), np.asarray(point, dtype=float))
    return box - hypervolume(limited[non_dominated(limited)].tolist(), reference)


def _extend(trace: _Trace, results) -> None:
    scale = trace.normalization
    for result in results[len(trace.points):]:
        ok = result.status is TrialStatus.ok
        if ok:
            macro = scale.macro(result.scores)
            trace.best = macro if trace.best is None else min(trace.best, macro)
            if trace.archive.add(result):  # the volume grows only when the front does
                point = tuple(scale.losses(result.scores))
                trace.hypervolume += gain(point, list(trace.front.values()), scale.reference)
                trace.front = {r.trial_id: trace.front.get(r.trial_id, point) for r in trace.archive.front}
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
        stale = trace is not None and (len(trace.points) > len(results) or (
            trace.points and trace.points[-1]["trial_id"] != results[len(trace.points) - 1].trial_id))  # another search by that id
        if trace is None or stale or trace.normalization != normalization:
            if len(_traces) >= _MAX_TRACES:
                _traces.pop(next(iter(_traces)))
            trace = _traces[search_id] = _Trace(normalization, ParetoArchive(spec.objectives))
        _extend(trace, results)
        points = list(trace.points)
    return {"id": search_id, "points": points, "normalization": normalization.as_dict()}
