"""Scores in loss form: direction.sign * score per objective, lower is better.

The search minimizes the mean of these normalized by the single checkpoints' spread
(proposer.normalize), the paper's macro-average on one scale for every unit.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from contracts import Objective


def loss_vector(scores: Mapping[str, float], objectives: Sequence[Objective]) -> list[float]:
    missing = [o.name for o in objectives if o.name not in scores]
    if missing:
        raise ValueError(f"scores lack objective(s): {', '.join(missing)}")
    return [o.direction.sign * scores[o.name] for o in objectives]
