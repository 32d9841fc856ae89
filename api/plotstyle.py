"""How trials are drawn: one table shared by the status page's scatter and the PNG
from `recycle run` / `recycle demo` (recycle/local/report.py), so both read the same.

Kinds, in legend order. A trial is drawn once, as the first kind that fits it
among single, uniform, greedy; otherwise as front or trial. Colours are
matplotlib's tab10 (grey 0.7 for plain trials); markers are named in words and
mapped to matplotlib's in report.py and to SVG shapes in static/search.js.
"""

from __future__ import annotations

PLOT_STYLE: dict[str, dict] = {
    "single": {"label": "single checkpoints", "color": "#d62728", "marker": "square", "size": 50},
    "uniform": {"label": "uniform soup", "color": "#2ca02c", "marker": "triangle", "size": 50},
    "greedy": {"label": "greedy soup", "color": "#9467bd", "marker": "diamond", "size": 50},
    "front": {"label": "Pareto front", "color": "#1f77b4", "marker": "circle", "size": 25},
    "trial": {"label": "trials", "color": "#b3b3b3", "marker": "circle", "size": 12},
}


def trial_kind(source: str, on_front: bool) -> str:
    """The kind a trial is drawn as, from its proposal's source."""
    if source.startswith("single:"):
        return "single"
    if source in ("uniform", "greedy"):
        return source
    return "front" if on_front else "trial"
