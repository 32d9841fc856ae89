"""The live API (a real `recycle api` process on its own Redis): schemathesis throws
generated requests at every operation with every check on; mutating calls need the
bearer token, reads can be made private; the token never reaches a log."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.faults.conftest import assert_no_secret_in_logs, make_stack
from tests.faults.scenarios import TOKEN, schemathesis_run, seed_api, server_errors
from tests.stack.processes import http, wait_for

MAX_EXAMPLES = 100  # per operation and phase: ~1,800 cases, ~30 s here


@pytest.fixture(scope="module")
def api(demo_pool, redis_server, tmp_path_factory):
    running = make_stack(demo_pool, redis_server, tmp_path_factory)
    running.base = running.start_api()
    running.private = running.start_api("api-private", env={"RECYCLE_PUBLIC_READS": "false"})
    try:
        for base in (running.base, running.private):
            wait_for(lambda: http("GET", base + "/healthz")[0] == 200, 90, "the API", running)
        running.seed = seed_api(running, demo_pool.pool, demo_pool.tasks)
        yield running
    finally:
        running.stop_all()


def files_under(*folders) -> set[str]:
    return {str(p) for folder in folders for p in folder.rglob("*")}


def test_schemathesis_finds_no_server_error_and_no_spec_violation(api, demo_pool, tmp_path):
    roots = [Path(root) for root in json.loads(api.env["RECYCLE_ALLOWED_ROOTS"])]
    before = files_under(*roots)
    report = schemathesis_run(api.base, api.seed, tmp_path / "fuzz", max_examples=MAX_EXAMPLES, run_seed=0)
    output = report["output"][-6000:]
    assert report["test_cases"]["generated"] >= 1000, output
    assert report["failures"] == [] and report["errors"] == [], output
    assert report["returncode"] == 0, output
    assert server_errors(api.metrics("api")) == 0
    # Nothing was written where pools live; only exports of the seeded ok trials, if any.
    assert files_under(*roots) == before
    exported = {p.parent.name for p in (api.log_dir / "data").rglob("recycle.json")}
    assert exported <= set(api.seed.trial_ids[:3])
    assert TOKEN not in report["output"] and TOKEN not in (tmp_path / "fuzz" / "schemathesis-report.json").read_text()


def test_mutations_need_the_token_and_change_nothing_without_it(api, demo_pool):
    [search_id], [pool_id] = api.seed.search_ids, api.seed.pool_ids
    pool_body = demo_pool.pool.model_dump(mode="json") | {"name": "another-pool"}
    search_body = {"pool_id": pool_id, "tasks": [t.model_dump(mode="json") for t in demo_pool.tasks], "budget": 4}
    mutations = [
        ("/v1/pools", pool_body),
        ("/v1/searches", search_body),
        (f"/v1/searches/{search_id}/pause", {}),
        (f"/v1/searches/{search_id}/resume", {}),
        (f"/v1/searches/{search_id}/cancel", {}),
        (f"/v1/searches/{search_id}/export", {"trial_id": api.seed.trial_ids[0]}),
    ]
    keys_before = sorted(api.redis.keys("recycle:*"))
    state_before = (api.store.list_pools(), api.store.list_searches(), api.store.get_status(search_id))
    files_before = files_under(api.log_dir / "data")
    for base in (api.base, api.private):
        for path, body in mutations:
            for header in (None, "", "Bearer", "Bearer wrong-token", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x",
                           f"Basic {TOKEN}", TOKEN, f"bearer  {TOKEN}"):
                status, answer = post_with_header(base + path, body, header)
                assert status == 401 and "token" in answer["error"], (path, header, status, answer)
    assert sorted(api.redis.keys("recycle:*")) == keys_before
    assert (api.store.list_pools(), api.store.list_searches(), api.store.get_status(search_id)) == state_before
    assert files_under(api.log_dir / "data") == files_before

    # Reads: public by default, token-only when RECYCLE_PUBLIC_READS=false.
    reads = ["/v1/pools", f"/v1/pools/{pool_id}", "/v1/searches", f"/v1/searches/{search_id}",
             f"/v1/searches/{search_id}/trials", f"/v1/searches/{search_id}/front"]
    for path in reads:
        assert http("GET", api.base + path)[0] == 200, path
        status, answer = http("GET", api.private + path)
        assert status == 401 and "token" in answer["error"], path
        assert http("GET", api.private + path, token=TOKEN)[0] == 200, path
    for path in ("/healthz", "/metrics", "/openapi.json"):  # probes and scrapers need no token
        assert http("GET", api.private + path)[0] == 200
    assert_no_secret_in_logs(api)


def post_with_header(url: str, body: dict, authorization: str | None):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
