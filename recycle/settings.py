"""The one settings object. Every field can be set by an environment variable
prefixed RECYCLE_ (e.g. RECYCLE_REDIS_URL, RECYCLE_ALLOWED_ROOTS='["/data"]')."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.liveness import LEASE_TTL_S


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECYCLE_", extra="ignore")

    # Where runs and exports go.
    data_dir: Path = Path(".cache")
    # Where `recycle demo` builds its checkpoint pools, once per machine (not per clone:
    # the SmolLM2 pool takes ~15 min to build).
    pool_cache_dir: Path = Path.home() / ".cache" / "recycle" / "pools"
    # Checkpoint paths a pool may name must resolve inside one of these (empty: anywhere,
    # fine for the CLI on your own machine; the API refuses to start without roots).
    allowed_roots: list[Path] = []
    # Where workers merge and evaluate: "cpu", "cuda", "cuda:1", or "auto" (GPU when present).
    device: str = "auto"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Bearer token for mutating API calls.
    api_token: SecretStr | None = None
    # Read-only endpoints answer without a token when true.
    public_reads: bool = True
    # Seconds before the broker hands out again a message never acknowledged (see
    # recycle/serve/celery_app.py): a backstop only; leases bring lost trials back.
    broker_visibility_timeout_s: float = Field(default=2 * 3600, gt=0)
    # Liveness (contracts/liveness.py). A trial whose lease was not renewed for this long
    # is sent again under the same trial id; a worker silent this long is not alive.
    lease_ttl_s: float = Field(default=LEASE_TTL_S, gt=0)
    # How many times a trial is sent again after losing its worker before it is failed.
    max_reproposals: int = Field(default=3, ge=0)
    # SIGTERM: a worker finishes its running trial within this many seconds, or hands it
    # back. docker-compose.yml's stop_grace_period is 10 s longer.
    worker_shutdown_grace_s: float = Field(default=50.0, ge=0)
    # Torch threads per worker process (None: the cores divided by --concurrency).
    worker_threads: int | None = Field(default=None, ge=1)
    # Results a worker could not publish wait in <data_dir>/spool, at most this many.
    spool_max_results: int = Field(default=10_000, ge=1)

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
