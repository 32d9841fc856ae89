"""The status page's routes through Flask's test client (the browser tests are in tests/pages)."""

from __future__ import annotations

import json
import re
from itertools import pairwise

import pytest
from pydantic import SecretStr

from api import Services, create_app
from api.plotstyle import PLOT_STYLE
from contracts import SearchStatus
from proposer import MemoryStore
from recycle.settings import Settings
from tests.pages.recorded import record
from tests.recorded_search import record_search

TOKEN = "pages-test-token"
NO_SERVICES = Services(inspect_pool=lambda pool: {}, check_search=lambda spec: None, export_trial=lambda *a: None)


def make_client(public_reads: bool, store=None):
    settings = Settings(api_token=SecretStr(TOKEN), public_reads=public_reads, allowed_roots=["/nowhere"])
    return create_app(settings, store or MemoryStore(), NO_SERVICES).test_client()


def page_config(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="recycle-config">(.*?)</script>', html, re.DOTALL)
    return json.loads(found.group(1))


def test_index_is_html_with_a_strict_policy():
    response = make_client(True).get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "unsafe" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    html = response.get_data(as_text=True)
    assert "/static/common.js" in html and "/static/index.js" in html
    assert "<script>" not in html  # nothing inline: the policy forbids it
    config = page_config(html)
    assert config["plot_order"] == list(PLOT_STYLE) and config["poll_seconds"] > 0


def test_search_page_for_a_known_search(demo_pool):
    store = MemoryStore()
    record_search(store, demo_pool, "s-known")
    response = make_client(True, store).get("/searches/s-known")
    assert response.status_code == 200
    config = page_config(response.get_data(as_text=True))
    assert config["search_id"] == "s-known" and config["plot_style"] == PLOT_STYLE


def test_unknown_search_is_404_unless_reads_are_private():
    missing = make_client(True).get("/searches/nope")
    assert missing.status_code == 404 and "No search nope" in missing.get_data(as_text=True)
    # Without public reads the shell cannot say whether a search exists: the page asks for the token.
    assert make_client(False).get("/searches/nope").status_code == 200


def test_search_id_is_escaped_in_the_page():
    response = make_client(False).get("/searches/%3Cb%20onmouseover%3Dx%3E")
    html = response.get_data(as_text=True)
    assert "<b onmouseover" not in html and "&lt;b onmouseover=x&gt;" in html
    assert page_config(html)["search_id"] == "<b onmouseover=x>"


@pytest.mark.parametrize("name, mimetype", [("common.js", "text/javascript"), ("search/main.js", "text/javascript"),
                                            ("search/plot.js", "text/javascript"), ("index.js", "text/javascript"),
                                            ("recycle.css", "text/css")])
def test_static_files_come_from_the_package(name, mimetype):
    response = make_client(True).get(f"/static/{name}")
    assert response.status_code == 200 and response.mimetype == mimetype
    response.close()


def test_the_search_view_carries_what_the_page_shows(demo_pool):
    store = MemoryStore()
    record_search(store, demo_pool, "s-view")
    view = make_client(True, store).get("/v1/searches/s-view").json
    assert view["checkpoints"] == demo_pool.pool.names
    assert view["trials_per_s"] == pytest.approx(8 / 20)  # 9 results finished over 20 s
    assert view["done"] == 8 and view["failed"] == 1 and view["best"]["trial_id"] in view["front"]


def test_the_search_page_loads_its_modules_from_the_package():
    store = MemoryStore()
    record(store, "s-mods", 2)
    html = make_client(True, store).get("/searches/s-mods").get_data(as_text=True)
    assert '<script type="module" src="/static/search/main.js">' in html
    client = make_client(True, store)
    main = client.get("/static/search/main.js").get_data(as_text=True)
    for module in re.findall(r'from "\./([a-z]+\.js)"', main):  # every import is served
        assert client.get(f"/static/search/{module}").status_code == 200, module


def test_trial_rows_carry_kind_and_normalized_macros():
    store = MemoryStore()
    record(store, "s-rows", 4, n_trials=12)
    page = make_client(True, store).get("/v1/searches/s-rows/trials").json
    rows = page["trials"]
    assert page["scaled"] is True and page["total"] == 12
    assert [r["kind"] for r in rows[:6]] == ["single"] * 4 + ["uniform", "greedy"]
    assert [r["checkpoint"] for r in rows[:4]] == ["base", "code-ft", "docs-ft", "prose-ft"]
    assert {r["kind"] for r in rows[6:]} == {"trial"}
    # 0 is the best and 1 the worst single on every task: the singles' macros lie in [0, 1].
    assert all(0.0 <= r["macro_average"] <= 1.0 for r in rows[:4])
    assert rows[4]["macro_average"] == rows[5]["macro_average"]  # the greedy step is the uniform soup
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["macro_average"] is None


def test_rows_wait_for_the_scale_until_every_single_is_scored():
    store = MemoryStore()
    record(store, "s-early", 2, n_trials=3, in_flight=2, status=SearchStatus.running)
    client = make_client(True, store)
    page = client.get("/v1/searches/s-early/trials").json
    assert page["scaled"] is False and all(r["macro_average"] is None for r in page["trials"])
    view = client.get("/v1/searches/s-early").json
    assert view["hypervolume"] is None and view["anchors"] == {"needed": 4, "settled": 3, "reference": 1.1}
    assert view["macro_label"] == "normalized macro (lower is better)" and view["best"] is None
    assert client.get("/v1/searches/s-early/history").json["points"] == []


def test_history_is_best_so_far_and_hypervolume_after_each_trial():
    store = MemoryStore()
    record(store, "s-hist", 2, n_trials=20)
    client = make_client(True, store)
    view = client.get("/v1/searches/s-hist").json
    points = client.get("/v1/searches/s-hist/history").json["points"]
    assert [p["settled"] for p in points] == list(range(1, 21))
    best = [p["best_macro"] for p in points]
    volume = [p["hypervolume"] for p in points]
    assert all(a >= b for a, b in pairwise(best)) and all(a <= b for a, b in pairwise(volume))
    assert best[-1] == pytest.approx(view["best"]["macro_average"]) and volume[-1] == pytest.approx(view["hypervolume"])


def test_history_extends_as_results_come_and_matches_a_fresh_computation():
    from api import history
    from contracts import TrialResult, TrialStatus
    from tests.pages.recorded import scores_of

    store = MemoryStore()
    record(store, "s-grow", 4, n_trials=16, in_flight=4, status=SearchStatus.running)
    client = make_client(True, store)
    assert len(client.get("/v1/searches/s-grow/history").json["points"]) == 16
    tasks = [o.name for o in store.get_search("s-grow").objectives]
    for proposal in store.proposals("s-grow")[16:]:
        scores = scores_of(proposal.weights, tasks, 0.0)
        store.record_result(TrialResult(proposal=proposal, status=TrialStatus.ok, scores=scores, report=scores, finished_at=1.0))
    grown = client.get("/v1/searches/s-grow/history").json["points"]
    history._traces.clear()
    assert grown == client.get("/v1/searches/s-grow/history").json["points"] and len(grown) == 20
    assert grown[-1]["hypervolume"] == pytest.approx(client.get("/v1/searches/s-grow").json["hypervolume"])


def test_a_running_search_without_results_for_long_looks_stalled():
    store = MemoryStore()
    record(store, "s-stall", 2, n_trials=10, in_flight=2, status=SearchStatus.running, finished_ago=600)
    record(store, "s-busy", 2, n_trials=10, in_flight=2, status=SearchStatus.running)
    client = make_client(True, store)
    stalled = client.get("/v1/searches/s-stall").json["activity"]
    assert stalled["stalled"] is True and stalled["idle_s"] >= 600 and stalled["typical_trial_s"] == 0.5
    assert client.get("/v1/searches/s-busy").json["activity"]["stalled"] is False
