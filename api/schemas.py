"""Request bodies the API accepts (the contracts' models where they fit as they are)."""

from __future__ import annotations

from pydantic import Field

from contracts import PoolSpec, SearchSpec
from contracts.models import Frozen, SearchOptions

PoolCreate = PoolSpec


class SearchCreate(SearchOptions):
    """A search on a pool registered before (POST /v1/pools gave its id)."""

    pool_id: str = Field(min_length=1, max_length=64)

    def to_spec(self, pool: PoolSpec) -> SearchSpec:
        return SearchSpec(pool=pool, **{field: getattr(self, field) for field in SearchOptions.model_fields})


class ExportRequest(Frozen):
    trial_id: str = Field(min_length=1, max_length=160)
