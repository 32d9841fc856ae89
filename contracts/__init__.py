"""Frozen data shapes shared by every recycle service.

Nothing in here imports another recycle package: the merger, the evaluator, the
proposer, the API and the workers all speak these models, so a payload that
validates here means the same thing everywhere (JSON on the wire, Redis at rest).
"""

from contracts.models import CheckpointRef, Direction, MergeSpec, Objective, PoolSpec, SearchSpec, TaskSpec, WeightLayout
from contracts.trials import Proposal, SearchStatus, Source, TrialResult, TrialStatus
from contracts import keys

__all__ = [
    "CheckpointRef",
    "Direction",
    "MergeSpec",
    "Objective",
    "PoolSpec",
    "Proposal",
    "SearchSpec",
    "SearchStatus",
    "Source",
    "TaskSpec",
    "TrialResult",
    "TrialStatus",
    "WeightLayout",
    "keys",
]
