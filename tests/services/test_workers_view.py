"""Workers as readers see them: GET /v1/workers and a search view's `workers_alive`, from
the heartbeats in a real store."""

from __future__ import annotations

import time

from pydantic import SecretStr

from api import create_app
from api.services import Services
from contracts.liveness import TrialRef, WorkerInfo
from proposer.store import MemoryStore
from recycle.settings import Settings
from tests.proposer.search_fakes import make_spec

NO_SERVICES = Services(inspect_pool=None, check_search=None, export_trial=None)


def test_workers_listed_with_liveness_and_counted_in_search_views():
    store = MemoryStore()
    now = time.time()
    store.beat(WorkerInfo(id="gpu-1:7", host="gpu-1", device="cuda", pools=("demo",),
                          current_trial=TrialRef(search_id="s1", trial_id="s1-t000004"), last_heartbeat=now - 1,
                          trials_done=12))
    store.beat(WorkerInfo(id="cpu-1:9", host="cpu-1", device="cpu", last_heartbeat=now - 45))
    store.create_search("s1", make_spec())
    settings = Settings(api_token=SecretStr("t"), allowed_roots=["/nowhere"], lease_ttl_s=20)
    client = create_app(settings, store, NO_SERVICES).test_client()

    body = client.get("/v1/workers").json
    assert body["stale_after_s"] == 20
    assert body["workers"] == [
        {"id": "cpu-1:9", "host": "cpu-1", "device": "cpu", "pools": [], "current_trial": None,
         "last_heartbeat": now - 45, "trials_done": 0, "alive": False},
        {"id": "gpu-1:7", "host": "gpu-1", "device": "cuda", "pools": ["demo"],
         "current_trial": {"search_id": "s1", "trial_id": "s1-t000004"}, "last_heartbeat": now - 1,
         "trials_done": 12, "alive": True},
    ]
    assert client.get("/v1/searches/s1").json["workers_alive"] == 1
    store.forget_worker("gpu-1:7")
    assert client.get("/v1/searches/s1").json["workers_alive"] == 0
    assert client.get("/v1/workers").json["workers"][0]["alive"] is False
