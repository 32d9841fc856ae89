"""The status page's routes through Flask's test client (the browser tests are in tests/pages)."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import SecretStr

from api import Services, create_app
from api.plotstyle import PLOT_STYLE
from proposer import MemoryStore
from recycle.settings import Settings
from tests.recorded_search import record_search

TOKEN = "pages-test-token"
NO_SERVICES = Services(inspect_pool=lambda pool: {}, check_search=lambda spec: None, export_trial=lambda *a: None)


def make_client(public_reads: bool, store=None):
    settings = Settings(api_token=SecretStr(TOKEN), public_reads=public_reads, allowed_roots=["/nowhere"])
    return create_app(settings, store or MemoryStore(), NO_SERVICES).test_client()


def page_config(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="recycle-config">(.*?)</script>', html, re.S)
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


@pytest.mark.parametrize("name, mimetype", [("common.js", "text/javascript"), ("search.js", "text/javascript"),
                                            ("index.js", "text/javascript"), ("recycle.css", "text/css")])
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
