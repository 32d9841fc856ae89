"""The product as compose runs it: Redis, two Celery workers, the proposer, the API
(and a real Prometheus when installed), each a separate process; a search posted
over HTTP runs to its budget."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port
from tests.stack.fixtures import BUDGET, TOKEN, start_search, wait_until_finished
from tests.stack.processes import http, scrape, total, wait_for

REPO = Path(__file__).resolve().parents[2]


def test_search_over_http_runs_to_budget_on_two_workers(stack, demo_pool, tmp_path):
    search_id = start_search(stack, demo_pool)
    view = wait_until_finished(stack, search_id)

    status, page = http("GET", f"{stack.base}/v1/searches/{search_id}/trials")
    assert status == 200
    trials = page["trials"]
    trial_ids = [t["proposal"]["trial_id"] for t in trials]
    assert len(trials) == BUDGET and len(set(trial_ids)) == BUDGET
    assert all(t["status"] == "ok" for t in trials), [t["error"] for t in trials if t["status"] != "ok"]
    # Both workers took trials: the work was really spread over processes.
    assert len({t["worker"] for t in trials}) == 2
    sources = {t["source_text"] for t in trials}
    assert {f"single:{name}" for name in demo_pool.pool.names} <= sources and "uniform" in sources

    status, front = http("GET", f"{stack.base}/v1/searches/{search_id}/front")
    assert status == 200 and front["front"] and front["hypervolume"] > 0
    assert view["done"] == BUDGET and view["hypervolume"] == pytest.approx(front["hypervolume"])

    # Metrics agree with what happened.
    proposer = scrape(f"http://127.0.0.1:{stack.ports['proposer']}/metrics")
    assert total(proposer, "recycle_trials_total", search=search_id, status="ok") == BUDGET
    assert total(proposer, "recycle_hypervolume", search=search_id) == pytest.approx(front["hypervolume"])
    executions = sum(total(scrape(f"http://127.0.0.1:{stack.ports[w]}/metrics"), "recycle_worker_tasks_total")
                     for w in ("worker-1", "worker-2"))
    assert executions >= BUDGET
    worker = scrape(f"http://127.0.0.1:{stack.ports['worker-1']}/metrics")
    assert total(worker, "recycle_worker_processes") == 1
    assert total(worker, "recycle_trial_seconds_count", phase="total") >= 1
    api = scrape(stack.base + "/metrics")
    assert total(api, "recycle_http_requests_total", route="/v1/searches", method="POST", status="201") == 1

    # Export the best trial over the API: an HF directory that transformers loads.
    best = view["best"]["trial_id"]
    status, exported = http("POST", f"{stack.base}/v1/searches/{search_id}/export", {"trial_id": best}, TOKEN)
    assert status == 201, exported
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(exported["path"]) is not None
    assert json.loads((Path(exported["path"]) / "recycle.json").read_text())["trial_id"] == best


def test_pause_resume_cancel(stack, demo_pool):
    search_id = start_search(stack, demo_pool, budget=40)
    assert http("POST", f"{stack.base}/v1/searches/{search_id}/pause", {}, None)[0] == 401
    status, body = http("POST", f"{stack.base}/v1/searches/{search_id}/pause", {}, TOKEN)
    assert status == 200 and body["status"] == "paused"
    time.sleep(3)  # in-flight trials drain; nothing new is proposed while paused
    proposed = http("GET", f"{stack.base}/v1/searches/{search_id}")[1]["proposed"]
    time.sleep(3)
    assert http("GET", f"{stack.base}/v1/searches/{search_id}")[1]["proposed"] == proposed
    assert http("POST", f"{stack.base}/v1/searches/{search_id}/resume", {}, TOKEN)[1]["status"] == "running"
    wait_for(lambda: http("GET", f"{stack.base}/v1/searches/{search_id}")[1]["proposed"] > proposed, 60, "more proposals", stack)
    assert http("POST", f"{stack.base}/v1/searches/{search_id}/cancel", {}, TOKEN)[1]["status"] == "cancelled"
    status, body = http("POST", f"{stack.base}/v1/searches/{search_id}/resume", {}, TOKEN)
    assert status == 409 and "cancelled" in body["error"]


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def test_prometheus_scrapes_the_stack(stack, demo_pool, tmp_path):
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("prometheus is not installed (.ci/run installs Debian's prometheus; apt-get install prometheus)")
    config = yaml.safe_load((REPO / "monitoring" / "prometheus.yml").read_text())
    targets = {"recycle-api": [f"127.0.0.1:{stack.ports['api']}"],
               "recycle-proposer": [f"127.0.0.1:{stack.ports['proposer']}"],
               "recycle-worker": [f"127.0.0.1:{stack.ports['worker-1']}", f"127.0.0.1:{stack.ports['worker-2']}"]}
    config["global"]["scrape_interval"] = "1s"
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    prometheus = subprocess.Popen(
        [binary, f"--config.file={config_path}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=(tmp_path / "prometheus.log").open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        search_id = start_search(stack, demo_pool, budget=8)
        wait_until_finished(stack, search_id)

        def query(expression: str):
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
            with urllib.request.urlopen(url, timeout=10) as response:
                result = json.loads(response.read())["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        wait_for(lambda: query(f'sum(recycle_trials_total{{search="{search_id}"}}) == 8'), 60, "Prometheus to see 8 trials")
        # Both workers' endpoints were scraped (the second may open its port a little later).
        wait_for(lambda: query('count(up{job="recycle-worker"} == 1)') == 2, 30, "both worker targets up")
        wait_for(lambda: query("sum(recycle_worker_processes)") == 2, 30, "both worker processes counted")
        assert query(f'recycle_hypervolume{{search="{search_id}"}}') > 0
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
