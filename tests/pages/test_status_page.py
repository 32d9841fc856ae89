"""The status page in a real headless Chromium, against the real stack (Redis, two
Celery workers, the proposer, the API as separate processes)."""

from __future__ import annotations

import json
from pathlib import Path

from api.plotstyle import PLOT_STYLE, trial_kind
from contracts import SearchStatus, Source
from proposer.redis_store import RedisStore
from tests.conftest import TEST_REDIS_URL, free_port
from tests.recorded_search import record_search
from tests.stack.fixtures import TOKEN, allowed_roots, start_search, wait_until_finished
from tests.stack.processes import Stack, http, wait_for

POINTS = "#plot [data-trial-id]"
ALWAYS_IN_LEGEND = {"single", "front", "trial"}


def expected_kinds(trials: list[dict], front: list[str]) -> dict[str, str]:
    return {t["proposal"]["trial_id"]: trial_kind(Source.model_validate(t["proposal"]["source"]), t["proposal"]["trial_id"] in front)
            for t in trials if t["status"] == "ok"}


def drawn(page, attribute: str = "trialId") -> list[str]:
    return page.eval_on_selector_all(POINTS, f"els => els.map(e => e.dataset.{attribute})")


def test_page_plots_every_trial_pauses_cancels_and_exports(watched, stack, demo_pool):
    first = start_search(stack, demo_pool, budget=8)
    view = wait_until_finished(stack, first)
    # The second search runs while the first is looked at; it is paused from the page.
    second = start_search(stack, demo_pool, budget=200, seed=5)
    trials = http("GET", f"{stack.base}/v1/searches/{first}/trials")[1]["trials"]
    kinds = expected_kinds(trials, view["front"])
    assert len(kinds) == 8

    watch = watched(token=TOKEN)
    page = watch.page
    page.goto(f"{stack.base}/searches/{first}")
    page.wait_for_function("n => document.querySelectorAll('#plot [data-trial-id]').length === n", arg=len(kinds))
    # Exactly one point per evaluated trial, drawn as the kind the PNG draws it.
    assert sorted(drawn(page)) == sorted(kinds)
    assert dict(zip(drawn(page), drawn(page, "kind"))) == kinds
    assert page.get_attribute("#plot", "data-points") == str(len(kinds))
    assert set(page.eval_on_selector_all("#plot .on-front", "els => els.map(e => e.dataset.trialId)")) == set(view["front"])
    legend = page.eval_on_selector_all("#legend .entry", "els => els.map(e => e.textContent.trim())")
    assert legend == [s["label"] for k, s in PLOT_STYLE.items() if k in ALWAYS_IN_LEGEND | set(kinds.values())]
    assert page.inner_text("#status") == "completed"
    assert page.is_disabled("#pause") and page.is_disabled("#resume") and page.is_disabled("#cancel")
    assert page.inner_text("#progress-text").startswith("8 of 8 trials")
    # The best trial heads the table and is the one Export would write.
    assert page.get_attribute("#trials tbody tr", "data-trial-id") == view["best"]["trial_id"]
    weights = page.eval_on_selector_all("#selected .weight-row", "els => els.map(e => e.dataset.checkpoint)")
    assert weights == demo_pool.pool.names

    # Four objectives: a pair selector; every pair still shows every trial.
    objectives = [o["name"] for o in view["objectives"]]
    options = page.eval_on_selector_all("#pair option", "els => els.map(e => e.textContent)")
    assert len(options) == len(objectives) * (len(objectives) - 1) // 2
    page.select_option("#pair", index=len(options) - 1)
    page.wait_for_function("label => document.querySelector('#plot svg').textContent.includes(label)", arg=f"{objectives[-1]} (minimize)")
    assert sorted(drawn(page)) == sorted(kinds)
    page.select_option("#pair", index=0)
    shot = watch.screenshot("status-page-completed.png")

    # Pause the running search: the page asks for the token once and shows the new status.
    page.goto(f"{stack.base}/searches/{second}")
    page.wait_for_selector("#status[data-status=running]")
    page.wait_for_selector("#pause:enabled")
    assert watch.dialogs == []  # reads are public here: no token asked to look
    page.click("#pause")
    page.wait_for_selector("#status[data-status=paused]")
    assert [kind for kind, _ in watch.dialogs] == ["prompt"] and "token" in watch.dialogs[0][1]
    assert http("GET", f"{stack.base}/v1/searches/{second}")[1]["status"] == "paused"
    assert page.evaluate("sessionStorage.getItem('recycle.token')") == TOKEN
    page.wait_for_selector("#resume:enabled")
    assert page.is_disabled("#pause")
    page.wait_for_selector(POINTS)
    watch.screenshot("status-page-paused.png")
    page.click("#cancel")  # a confirmation, no second token prompt
    page.wait_for_selector("#status[data-status=cancelled]")
    assert [kind for kind, _ in watch.dialogs] == ["prompt", "confirm"]
    assert http("GET", f"{stack.base}/v1/searches/{second}")[1]["status"] == "cancelled"

    # Export the first search's best trial from its page.
    page.goto(f"{stack.base}/searches/{first}")
    page.wait_for_selector("#export:enabled")
    page.click("#export")
    page.wait_for_selector("#message[data-path]")
    exported = Path(page.get_attribute("#message", "data-path"))
    assert json.loads((exported / "recycle.json").read_text())["trial_id"] == view["best"]["trial_id"]
    assert (exported / "mergekit.yaml").exists()

    # The list shows both searches with their statuses.
    page.goto(f"{stack.base}/")
    page.wait_for_selector(f"tr[data-search-id='{first}']")
    rows = page.eval_on_selector_all("#searches tbody tr", "els => els.map(e => [e.dataset.searchId, e.querySelector('.status').textContent])")
    assert dict(rows) == {first: "completed", second: "cancelled"}
    assert watch.errors == [], watch.errors
    assert shot.stat().st_size > 20_000


def test_page_asks_for_the_token_when_reads_need_one(watched, demo_pool, redis_client, tmp_path):
    """With RECYCLE_PUBLIC_READS=false the page prompts before it can show anything."""
    search_id = "s-private"
    record_search(RedisStore(redis_client), demo_pool, search_id, status=SearchStatus.completed)
    port = free_port()
    api = Stack({"RECYCLE_REDIS_URL": TEST_REDIS_URL, "RECYCLE_ALLOWED_ROOTS": json.dumps(allowed_roots(demo_pool)),
                 "RECYCLE_API_TOKEN": TOKEN, "RECYCLE_PUBLIC_READS": "false", "RECYCLE_DATA_DIR": str(tmp_path / "data")},
                tmp_path)
    api.start("api", "api", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http("GET", base + "/healthz")[0] == 200, 60, "the API", api)
        assert http("GET", f"{base}/v1/searches/{search_id}")[0] == 401

        declined = watched(token=None)  # dismisses the prompt: the page says why it shows nothing
        declined.page.goto(f"{base}/searches/{search_id}")
        declined.page.wait_for_selector("#banner:not([hidden])")
        assert "token" in declined.page.inner_text("#banner") and declined.page.get_attribute("#plot", "data-points") == "0"

        watch = watched(token=TOKEN)
        watch.page.goto(f"{base}/searches/{search_id}")
        watch.page.wait_for_function("n => document.querySelectorAll('#plot [data-trial-id]').length === n", arg=8)
        assert [kind for kind, _ in watch.dialogs] == ["prompt"]
        assert watch.page.inner_text("#status") == "completed"
        assert watch.errors == [] or all("401" in e for e in watch.errors), watch.errors
    finally:
        api.stop_all()
