"""How trials are drawn: one table shared by the status page's plots and the PNG
from `recycle run` / `recycle demo` (recycle/local/report.py), so both read the same.

Kinds, in legend order. A trial is drawn once, as the first kind that fits it
among single, uniform, greedy; otherwise as front or trial. Colours are
matplotlib's tab10 (grey 0.7 for plain trials); markers are named in words and
mapped to matplotlib's in report.py and to SVG shapes in static/search/plot.js.
"""

from __future__ import annotations

from contracts import Source

PLOT_STYLE: dict[str, dict] = {
    "single": {"label": "single checkpoints", "color": "#d62728", "marker": "square", "size": 50},
    "uniform": {"label": "uniform soup", "color": "#2ca02c", "marker": "triangle", "size": 50},
    "greedy": {"label": "greedy soup", "color": "#9467bd", "marker": "diamond", "size": 50},
    "front": {"label": "Pareto front", "color": "#1f77b4", "marker": "circle", "size": 25},
    "trial": {"label": "trials", "color": "#b3b3b3", "marker": "circle", "size": 12},
}
# Kinds fixed by who proposed the trial; any other trial is "front" or "trial" by where it lies.
BASELINE_KINDS = ("single", "uniform", "greedy")


def proposal_kind(source: Source) -> tuple[str, str | None]:
    """(kind, checkpoint) as drawn: "single" with its checkpoint, "uniform", "greedy", else "trial".
    (Text sources that older stores hold load as Source: see contracts.Source.)"""
    if source.kind not in BASELINE_KINDS:
        return "trial", None
    return source.kind, source.checkpoint


def trial_kind(source: Source, on_front: bool) -> str:
    """The kind a trial is drawn as, from its proposal's source."""
    kind, _ = proposal_kind(source)
    return "front" if kind == "trial" and on_front else kind
