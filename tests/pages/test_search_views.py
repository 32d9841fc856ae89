"""The search page's views in a real headless Chromium, over searches recorded into a real
Redis store and served over real HTTP: 2 and 4 objectives at 1024 and 1600 px, parallel
coordinates linked to the scatter and the table, zoom and pan, sorting, CSV, the overlay of
a second search, the worker warning and the status message."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest

from contracts import SearchStatus, TrialResult, TrialStatus
from contracts.liveness import WorkerInfo
from tests.pages.conftest import SERVED_TOKEN
from tests.pages.recorded import record, scores_of
from tests.stack.processes import http

POINTS = "#plot [data-trial-id]"


def rows_of(served, search_id: str) -> list[dict]:
    return http("GET", f"{served.base}/v1/searches/{search_id}/trials")[1]["trials"]


def open_search(watched, served, search_id: str, width: int = 1400, token: str | None = None):
    watch = watched(token=token)
    watch.page.set_viewport_size({"width": width, "height": 900})
    n = sum(r["status"] == "ok" for r in rows_of(served, search_id))
    watch.page.goto(f"{served.base}/searches/{search_id}")
    watch.page.wait_for_function("n => document.querySelectorAll('#plot [data-trial-id]').length === n", arg=n)
    watch.page.wait_for_selector("#history-hypervolume svg")
    return watch


def drawn_kinds(page) -> dict[str, str]:
    return dict(page.eval_on_selector_all(POINTS, "els => els.map(e => [e.dataset.trialId, e.dataset.kind])"))


@pytest.mark.parametrize("n_objectives", [2, 4])
@pytest.mark.parametrize("width", [1024, 1600])
def test_every_trial_drawn_as_the_server_says_without_sideways_scroll(watched, served, n_objectives, width):
    record(served.store, "s-look", n_objectives, n_trials=30)
    watch = open_search(watched, served, "s-look", width)
    page = watch.page
    view = http("GET", f"{served.base}/v1/searches/s-look")[1]
    rows = [r for r in rows_of(served, "s-look") if r["status"] == "ok"]
    front = set(view["front"])
    expected = {r["proposal"]["trial_id"]: "front" if r["kind"] == "trial" and r["proposal"]["trial_id"] in front else r["kind"]
                for r in rows}
    assert drawn_kinds(page) == expected
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    # Parallel coordinates for three objectives or more, one line per scored trial.
    assert page.is_visible("#parallel-panel") == (n_objectives >= 3)
    if n_objectives >= 3:
        assert page.get_attribute("#parallel", "data-lines") == str(len(rows))
        assert page.eval_on_selector_all("#parallel .pc-axis", "els => els.map(e => e.dataset.axis)") == [o["name"] for o in view["objectives"]]
    # What the server computed, shown as it came.
    assert page.inner_text("#best") == f"{view['best']['macro_average']:.4f}"
    assert page.inner_text("#best-label") == "normalized macro (lower is better)"
    assert page.inner_text("#hypervolume") == f"{view['hypervolume']:.4f}"
    assert "reference point 1.10 on each task (1 = the worst single checkpoint)" in page.inner_text("#hypervolume-detail")
    assert page.get_attribute("#trials tbody tr", "data-trial-id") == view["best"]["trial_id"]
    watch.screenshot(f"search-{n_objectives}-objectives-{width}px.png")
    assert watch.errors == [], watch.errors


def test_a_greedy_step_on_the_uniform_soup_stays_visible_and_clickable(watched, served):
    record(served.store, "s-greedy", 2, n_trials=20)
    page = open_search(watched, served, "s-greedy").page
    for kind in ("uniform", "greedy"):
        box = page.locator(f"#plot [data-kind={kind}]").bounding_box()
        centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        on_top = page.evaluate("([x, y]) => document.elementFromPoint(x, y).closest('[data-kind]')?.dataset.kind", centre)
        assert on_top == kind
        page.mouse.click(*centre)
        page.wait_for_selector(f"#plot [data-kind={kind}].selected")
        assert page.inner_text("#selected p strong") == f"trial #{4 if kind == 'uniform' else 5}"
    # Both are fanned out around the spot they share, each with a leader line to it.
    assert page.locator("#plot [data-kind=uniform][data-fanned], #plot [data-kind=greedy][data-fanned]").count() == 2
    assert page.locator("#plot .leader").count() >= 2


def test_parallel_coordinates_select_and_keep_ranges_across_views(watched, served):
    record(served.store, "s-pc", 4, n_trials=30)
    watch = open_search(watched, served, "s-pc")
    page = watch.page
    page.select_option("#rows", "all")
    # A click on a line selects that trial in the scatter, the table and the panel.
    page.locator("#parallel").scroll_into_view_if_needed()
    points = page.get_attribute("#parallel .pc-hit[data-trial-id]:not([data-trial-id$='000004'])", "points").split()
    (x0, y0), (x1, y1) = [map(float, p.split(",")) for p in points[:2]]
    box = page.locator("#parallel svg").bounding_box()
    at = (box["x"] + (x0 + x1) / 2, box["y"] + (y0 + y1) / 2)
    picked = page.evaluate("([x, y]) => document.elementFromPoint(x, y).dataset.trialId", at)
    assert picked
    page.mouse.click(*at)
    page.wait_for_selector(f"#plot .point.selected[data-trial-id='{picked}']")
    assert page.get_attribute("#trials tbody tr.selected", "data-trial-id") == picked
    assert page.get_attribute("#parallel .pc-line.selected", "data-trial-id") == picked
    # Dragging along the first axis keeps a range: the scatter dims the rest, the table drops it.
    spine = page.locator("#parallel .pc-axis[data-axis=code] .pc-brush-hit").bounding_box()
    page.mouse.move(spine["x"] + 12, spine["y"] + 2)
    page.mouse.down()
    page.mouse.move(spine["x"] + 12, spine["y"] + spine["height"] * 0.4, steps=5)
    page.mouse.up()
    page.wait_for_selector("#parallel .pc-brush")
    scored = len(page.query_selector_all(POINTS))
    kept = scored - len(page.query_selector_all("#plot .point.dim"))
    assert 0 < kept < scored
    assert len(page.query_selector_all("#trials tbody tr")) == kept
    assert page.inner_text("#brush-note").startswith(f"{kept} of {scored} trials")
    codes = [float(v) for v in page.eval_on_selector_all("#trials tbody tr td:nth-child(4)", "els => els.map(e => e.textContent)")]
    assert max(codes) - min(codes) < 0.5 * 0.6  # code scores of the kept rows span less than the singles' range
    # A click on the axis lets the range go.
    page.mouse.click(spine["x"] + 12, spine["y"] + spine["height"] * 0.8)
    page.wait_for_function("() => !document.querySelector('#parallel .pc-brush')")
    assert page.query_selector_all("#plot .point.dim") == []
    assert watch.errors == [], watch.errors


def test_zoom_pan_and_reset(watched, served):
    record(served.store, "s-zoom", 2, n_trials=20)
    page = open_search(watched, served, "s-zoom").page
    domain = lambda: [float(v) for v in page.get_attribute("#plot svg", "data-x-domain").split(",")]
    full = domain()
    box = page.locator("#plot svg").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -300)  # a plain wheel scrolls the page past the plot, it does not zoom...
    page.keyboard.down("Control")
    page.mouse.wheel(0, -300)
    page.keyboard.up("Control")
    page.wait_for_function("w => { const [a, b] = document.querySelector('#plot svg').dataset.xDomain.split(',').map(Number); return b - a < w; }",
                           arg=(full[1] - full[0]) * 0.9)
    zoomed = domain()
    # ...so one step in (x 1/1.25) is all that happened, around the pointer.
    assert zoomed[1] - zoomed[0] == pytest.approx((full[1] - full[0]) / 1.25)
    assert zoomed[0] > full[0] and zoomed[1] < full[1] and page.is_visible("#zoom-reset")
    box = page.locator("#plot svg").bounding_box()  # the wheel may have scrolled the page
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 100, box["y"] + box["height"] / 2, steps=4)
    page.mouse.up()
    panned = domain()
    assert panned[0] < zoomed[0] and panned[1] - panned[0] == pytest.approx(zoomed[1] - zoomed[0])
    page.dblclick("#plot svg")
    page.wait_for_function("() => document.getElementById('zoom-reset').hidden")
    assert domain() == pytest.approx(full)


def test_sorting_and_csv(watched, served):
    record(served.store, "s-sort", 2, n_trials=20)
    page = open_search(watched, served, "s-sort").page
    page.select_option("#rows", "all")
    column = lambda n: page.eval_on_selector_all(f"#trials tbody tr td:nth-child({n})", "els => els.map(e => e.textContent)")
    page.click("#trials th[data-sort='task:code'] button")
    page.wait_for_selector("#trials th[data-sort='task:code'][aria-sort=ascending]")
    codes = [float(v) for v in column(4) if v != "–"]
    assert codes == sorted(codes) and len(codes) == 19
    assert column(4)[-1] == "–"  # the failed trial has no score: last either way
    page.click("#trials th[data-sort='task:code'] button")
    page.wait_for_selector("#trials th[data-sort='task:code'][aria-sort=descending]")
    codes = [float(v) for v in column(4) if v != "–"]
    assert codes == sorted(codes, reverse=True) and column(4)[-1] == "–"

    with page.expect_download() as download:
        page.click("#csv")
    assert download.value.suggested_filename == "s-sort-trials.csv"
    table = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    rows = {r["proposal"]["trial_id"]: r for r in rows_of(served, "s-sort")}
    assert len(table) == len(rows) == 20
    for line in table:
        row = rows[line["trial_id"]]
        assert line["kind"] in ("single", "uniform", "greedy", "front", "trial")
        if row["status"] == "ok":
            assert float(line["macro_normalized"]) == pytest.approx(row["macro_average"])
            assert float(line["search:code"]) == pytest.approx(row["scores"]["code"])
            assert [float(line[f"weight:{c}"]) for c in ("base", "code-ft", "docs-ft", "prose-ft")] == pytest.approx(row["proposal"]["weights"])
        else:
            assert line["macro_normalized"] == "" and line["error"] == "worker lost"


def test_overlay_of_a_second_search_on_the_same_pool(watched, served):
    record(served.store, "s-tpe", 2, n_trials=24)
    record(served.store, "s-cma", 2, n_trials=18, strategy="cmaes", seed=4)
    record(served.store, "s-other-tasks", 4, n_trials=8)  # other objectives: not offered
    watch = open_search(watched, served, "s-tpe")
    page = watch.page
    page.wait_for_selector("#compare-label:not([hidden])")
    assert page.eval_on_selector_all("#compare option", "els => els.map(e => e.value)") == ["", "s-cma"]
    page.select_option("#compare", "s-cma")
    page.wait_for_function("() => document.querySelectorAll('#plot .ghost').length === 17")  # 18 trials, one failed
    assert len(page.query_selector_all(POINTS)) == 23  # its own trials unchanged
    assert page.locator("#plot .front-line.dashed").count() == 1
    assert page.eval_on_selector_all("#history-macro path.step", "els => els.map(e => e.dataset.series)") == ["s-tpe (tpe)", "s-cma (cmaes)"]
    assert "s-cma (cmaes)" in page.inner_text("#legend")
    watch.screenshot("search-overlay.png")
    page.select_option("#compare", "")
    page.wait_for_function("() => document.querySelectorAll('#plot .ghost').length === 0")
    assert watch.errors == [], watch.errors


def test_status_message_goes_once_the_search_moves_on(watched, served):
    """Pause, Resume, then the search completes: "Search running." does not stay."""
    record(served.store, "s-life", 2, n_trials=10, in_flight=3, status=SearchStatus.running)
    watch = open_search(watched, served, "s-life", token=SERVED_TOKEN)
    page = watch.page
    page.click("#pause")
    page.wait_for_selector("#status[data-status=paused]")
    assert page.inner_text("#message") == "Search paused."
    page.click("#resume")
    page.wait_for_selector("#status[data-status=running]")
    assert page.inner_text("#message") == "Search running."
    tasks = [o.name for o in served.store.get_search("s-life").objectives]
    for proposal in served.store.proposals("s-life")[10:]:
        scores = scores_of(proposal.weights, tasks, 0.0)
        served.store.record_result(TrialResult(proposal=proposal, status=TrialStatus.ok, scores=scores, report=scores, finished_at=1.0))
    served.store.set_status("s-life", SearchStatus.completed)
    page.wait_for_selector("#status[data-status=completed]")
    assert page.is_hidden("#message")
    # The trials that came in while the page was open are drawn and counted too (9 + 3 ok).
    page.wait_for_function("() => document.querySelectorAll('#plot [data-trial-id]').length === 12")
    assert page.inner_text("#progress-text").startswith("13 of 13 trials")
    assert watch.errors == [], watch.errors


def test_a_search_waiting_on_no_worker_says_so(watched, served):
    """From the workers' heartbeats (GET /v1/workers): none alive while trials are in flight."""
    record(served.store, "s-stuck", 2, n_trials=10, in_flight=2, status=SearchStatus.running)
    watch = open_search(watched, served, "s-stuck")
    page = watch.page
    page.wait_for_selector("#worker-warning:not([hidden])")
    assert page.inner_text("#worker-warning").startswith("No worker is alive: the 2 trials in flight wait until one runs")
    assert page.inner_text("#workers .value") == "0 alive"
    watch.screenshot("search-no-worker.png")
    # A worker that beats: the warning goes, the panel lists it.
    served.store.beat(WorkerInfo(id="gpu-box:41", host="gpu-box", device="cuda:0", pools=("recorded-pool",),
                                 current_trial={"search_id": "s-stuck", "trial_id": "s-stuck-t000010"},
                                 last_heartbeat=time.time(), trials_done=3))
    page.wait_for_selector("#worker-warning[hidden]", state="attached")
    assert page.inner_text("#workers .value") == "1 alive"
    assert page.inner_text("#workers li[data-alive='1']").startswith("gpu-box:41 busy")
    # Its heartbeat goes stale: the warning says when it was last heard of.
    served.store.beat(WorkerInfo(id="gpu-box:41", host="gpu-box", device="cuda:0", last_heartbeat=time.time() - 600))
    page.wait_for_selector("#worker-warning:not([hidden])")
    assert page.inner_text("#worker-warning").startswith("No worker is alive (last heartbeat 10 min ago)")
    assert watch.errors == [], watch.errors


def test_without_worker_heartbeats_the_time_since_the_last_result_stands_in(watched, served):
    """A server whose API document has no /v1/workers (an older one): judged from in-flight age."""
    record(served.store, "s-quiet", 2, n_trials=10, in_flight=2, status=SearchStatus.running, finished_ago=900)
    record(served.store, "s-moving", 2, n_trials=10, in_flight=2, status=SearchStatus.running)
    document = http("GET", f"{served.base}/openapi.json")[1]
    del document["paths"]["/v1/workers"]
    pages = []
    for search_id in ("s-quiet", "s-moving"):
        watch = watched()
        watch.page.route("**/openapi.json", lambda route: route.fulfill(json=document))
        watch.page.goto(f"{served.base}/searches/{search_id}")
        watch.page.wait_for_selector("#workers .value:text('unknown')")
        pages.append(watch)
    quiet, moving = pages
    assert quiet.page.inner_text("#worker-warning").startswith("No result for 15 min while 2 trials in flight: is a worker running?")
    assert moving.page.is_hidden("#worker-warning")
    assert quiet.errors == [] and moving.errors == []


def test_before_the_singles_are_scored_the_page_says_what_it_waits_for(watched, served):
    record(served.store, "s-early", 2, n_trials=3, in_flight=3, status=SearchStatus.running)
    watch = open_search(watched, served, "s-early")
    page = watch.page
    assert page.inner_text("#hypervolume") == "–"
    assert page.inner_text("#hypervolume-detail") == "waits for the single checkpoints' scores (3 of 4)"
    assert "waits for the single checkpoints' scores" in page.inner_text("#history-macro")
    assert watch.errors == [], watch.errors


@pytest.mark.parametrize("width", [1024, 1600])
def test_the_list_of_searches_fits(watched, served, width):
    for n, objectives in enumerate((2, 4, 4)):
        record(served.store, f"s-list-{n}", objectives, n_trials=12, in_flight=n, status=SearchStatus.running if n else SearchStatus.completed)
    watch = watched()
    watch.page.set_viewport_size({"width": width, "height": 700})
    watch.page.goto(f"{served.base}/")
    watch.page.wait_for_selector("tr[data-search-id='s-list-2']")
    assert watch.page.evaluate("document.documentElement.scrollWidth") <= width
    best = http("GET", f"{served.base}/v1/searches/s-list-0")[1]["best"]["macro_average"]
    assert f"{best:.4f}" in watch.page.inner_text("tr[data-search-id='s-list-0']")
    watch.screenshot(f"searches-{width}px.png")
    assert watch.errors == [], watch.errors
