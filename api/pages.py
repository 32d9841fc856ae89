"""The status page: plain HTML shells that poll the JSON API from the browser.

No build step and no CDN: the scripts and styles under api/static are served by
this blueprint, and the charts are drawn as inline SVG by the modules in static/search/
(plot.js and its siblings draw; main.js polls and keeps what the user picked).
The shells carry no search data themselves; everything shown is read from
/v1/... with the same auth as any other client, so the public-reads setting
applies (the page asks for the token when reads need one).
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from api.plotstyle import PLOT_STYLE

blueprint = Blueprint("pages", __name__, template_folder="templates", static_folder="static", static_url_path="/static")

POLL_SECONDS = 2.0

# Scripts only from here, nothing inline; the page talks to this server only.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@blueprint.after_request
def _secure(response):
    response.headers.update(SECURITY_HEADERS)
    return response


def page_config(**extra) -> dict:
    # The legend order goes as a list: JSON objects get their keys sorted on the way.
    return {"poll_seconds": POLL_SECONDS, "plot_style": PLOT_STYLE, "plot_order": list(PLOT_STYLE), **extra}


@blueprint.get("/")
def index():
    return render_template("recycle/index.html", config=page_config(page="index"))


@blueprint.get("/searches/<search_id>")
def search(search_id: str):
    settings = current_app.config["RECYCLE_SETTINGS"]
    # With public reads an unknown id is a plain 404; otherwise the page must not say
    # whether it exists before the browser shows a token.
    if settings.public_reads and current_app.config["RECYCLE_STORE"].get_search(search_id) is None:
        return render_template("recycle/not_found.html", search_id=search_id, config=page_config(page="missing")), 404
    return render_template("recycle/search.html", search_id=search_id, config=page_config(page="search", search_id=search_id))
