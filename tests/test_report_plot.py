"""The PNG front plot (recycle run / demo) draws trials as the status page does:
same kinds, labels, colours and markers, from api/plotstyle.py."""

from __future__ import annotations

import matplotlib
import pytest
from matplotlib.colors import to_hex

from api.plotstyle import PLOT_STYLE, trial_kind
from proposer import MemoryStore, ParetoArchive
from recycle.local.report import MPL_MARKERS, front_figure, plot_front
from tests.recorded_search import record_search

matplotlib.use("Agg")


@pytest.fixture
def recorded(demo_pool):
    store = MemoryStore()
    spec = record_search(store, demo_pool, "s-plot")
    return spec, store.results("s-plot")


def legend_of(figure) -> list[tuple[str, str, str]]:
    legend = figure.axes[0].get_legend()
    return [(text.get_text(), to_hex(handle.get_color()), handle.get_marker())
            for text, handle in zip(legend.get_texts(), legend.legend_handles)]


@pytest.mark.parametrize("n_objectives", [2, 4])
def test_png_uses_the_page_legend_and_draws_each_trial_once(recorded, n_objectives):
    import matplotlib.pyplot as plt

    spec, results = recorded
    objectives = spec.objectives[:n_objectives]
    ok = [r for r in results if r.status.value == "ok"]
    archive = ParetoArchive(objectives)
    for result in ok:
        archive.add(result)
    front = {r.trial_id for r in archive.front}
    kinds = {trial_kind(r.proposal.source, r.trial_id in front) for r in ok}
    figure = front_figure(results, objectives)
    try:
        expected = [(s["label"], s["color"], MPL_MARKERS[s["marker"]]) for k, s in PLOT_STYLE.items()
                    if k in {"single", "front", "trial"} | kinds]
        assert legend_of(figure) == expected
        for axis in figure.axes:
            drawn = sum(len(c.get_offsets()) for c in axis.collections)
            assert drawn == len(ok)  # one point per evaluated trial, as on the page
            lines = [line for line in axis.get_lines() if to_hex(line.get_color()) == PLOT_STYLE["front"]["color"]]
            # The front is a line only with two objectives (where it is the front of the panel).
            assert len(lines) == (1 if n_objectives == 2 else 0)
        assert len(figure.axes) == n_objectives * (n_objectives - 1) // 2
    finally:
        plt.close(figure)


def test_plot_front_writes_a_png(recorded, tmp_path):
    spec, results = recorded
    path = plot_front(results, spec.objectives[:1], tmp_path / "front.png")  # one objective: score by trial number
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
