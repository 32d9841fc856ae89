"""The one settings object. Every field can be set by an environment variable
prefixed RECYCLE_ (e.g. RECYCLE_REDIS_URL, RECYCLE_ALLOWED_ROOTS='["/data"]')."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    # Seconds before the broker hands out again a trial whose whole worker vanished
    # (see recycle/serve/celery_app.py): above the longest trial.
    broker_visibility_timeout_s: float = Field(default=2 * 3600, gt=0)

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
