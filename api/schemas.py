"""Request bodies the API accepts (the contracts' models where they fit as they are)."""

from __future__ import annotations

from pydantic import Field

from contracts import MergeSpec, PoolSpec, SearchSpec, TaskSpec
from contracts.models import Frozen, StrategyName

PoolCreate = PoolSpec


class SearchCreate(Frozen):
    pool_id: str = Field(min_length=1, max_length=64)
    tasks: tuple[TaskSpec, ...] = Field(min_length=1, max_length=32)
    strategy: StrategyName = "tpe"
    budget: int = Field(default=48, ge=1, le=100_000)
    concurrency: int = Field(default=2, ge=1, le=1024)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    merge: MergeSpec = MergeSpec()
    baselines: bool = True
    trial_timeout_s: float = Field(default=1800.0, gt=0, le=7 * 24 * 3600)

    def to_spec(self, pool: PoolSpec) -> SearchSpec:
        return SearchSpec(pool=pool, **self.model_dump(exclude={"pool_id"}))


class ExportRequest(Frozen):
    trial_id: str = Field(min_length=1, max_length=160)
