"""What a search produces: proposals (with where they came from), trial results, search status.

Split from contracts.models (pools, tasks, search specs) to keep each module readable in one sitting.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from contracts.models import MAX_PROPOSAL_WEIGHTS, NAME_PATTERN, Frozen


def _check_finite(values: tuple[float, ...] | dict[str, float], what: str):
    items = values.values() if isinstance(values, dict) else values
    if any(not math.isfinite(v) for v in items):
        raise ValueError(f"{what} must be finite numbers")
    return values


# Where a proposal came from: a fixed baseline (a single checkpoint, the uniform soup, a
# shrunk single), a greedy-soup step, a dominance probe, or a strategy (by its name;
# "external": one handed to the driver in code, e.g. bench/search.py's Optuna samplers).
SourceKind = Literal["single", "uniform", "shrunk", "greedy", "probe", "tpe", "cmaes", "random", "external"]
# The kinds that name the checkpoint they concern (the single itself, or the single probed).
KINDS_WITH_CHECKPOINT = frozenset({"single", "shrunk", "probe"})
# Trials every search with baselines makes, whatever its strategy.
BASELINE_KINDS = frozenset({"single", "uniform", "shrunk", "greedy"})


class Source(Frozen):
    """Who proposed a trial: data, never text to parse. Stored proposals written before the
    type existed carry text ("single:<checkpoint>", "uniform", "tpe", ...): it still loads."""

    kind: SourceKind
    checkpoint: str | None = Field(default=None, pattern=NAME_PATTERN)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data):
        if isinstance(data, str):
            kind, _, checkpoint = data.partition(":")
            return {"kind": kind, "checkpoint": checkpoint or None}
        return data

    @model_validator(mode="after")
    def _checkpoint_where_it_belongs(self) -> "Source":
        if (self.checkpoint is not None) != (self.kind in KINDS_WITH_CHECKPOINT):
            needs = "needs" if self.kind in KINDS_WITH_CHECKPOINT else "takes no"
            raise ValueError(f"a {self.kind!r} source {needs} checkpoint")
        return self

    @property
    def is_baseline(self) -> bool:
        return self.kind in BASELINE_KINDS

    def __str__(self) -> str:
        """For people (tables, tooltips): "single:c0", "greedy", "tpe"."""
        return f"{self.kind}:{self.checkpoint}" if self.checkpoint else self.kind


class Proposal(Frozen):
    search_id: str = Field(pattern=NAME_PATTERN)
    # Unique per search and stable: the idempotency key of the trial's result.
    trial_id: str = Field(min_length=1, max_length=160)
    number: int = Field(ge=0)
    # One per checkpoint, or per layer group one per checkpoint (MergeSpec.weights), group-major.
    weights: tuple[float, ...] = Field(min_length=1, max_length=MAX_PROPOSAL_WEIGHTS)
    source: Source

    @field_validator("weights")
    @classmethod
    def _finite(cls, weights: tuple[float, ...]) -> tuple[float, ...]:
        return _check_finite(weights, "weights")

    @staticmethod
    def make_trial_id(search_id: str, number: int) -> str:
        return f"{search_id}-t{number:06d}"


class TrialStatus(str, Enum):
    ok = "ok"
    failed = "failed"


class TrialResult(Frozen):
    proposal: Proposal
    status: TrialStatus
    # Search split: what the strategy sees. One score per objective (task name).
    scores: dict[str, float] = Field(default_factory=dict)
    # Report split: held out, never shown to the strategy.
    report: dict[str, float] = Field(default_factory=dict)
    error: str | None = Field(default=None, max_length=4000)
    merge_seconds: float = Field(default=0.0, ge=0)
    eval_seconds: float = Field(default=0.0, ge=0)
    total_seconds: float = Field(default=0.0, ge=0)
    worker: str = ""
    finished_at: float = 0.0

    @field_validator("scores", "report")
    @classmethod
    def _finite(cls, scores: dict[str, float]) -> dict[str, float]:
        return _check_finite(scores, "scores")

    @model_validator(mode="after")
    def _ok_has_scores_failed_has_reason(self) -> "TrialResult":
        if self.status is TrialStatus.ok and not self.scores:
            raise ValueError("an ok trial carries its scores")
        if self.status is TrialStatus.failed and not self.error:
            raise ValueError("a failed trial carries the reason")
        return self

    @property
    def trial_id(self) -> str:
        return self.proposal.trial_id

    @property
    def search_id(self) -> str:
        return self.proposal.search_id


class SearchStatus(str, Enum):
    running = "running"
    paused = "paused"
    cancelled = "cancelled"
    completed = "completed"
    failed = "failed"

    @property
    def finished(self) -> bool:
        return self in (SearchStatus.cancelled, SearchStatus.completed, SearchStatus.failed)
