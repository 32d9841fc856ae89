"""Task scores on one scale: what the macro-average, "best" and the hypervolume are computed on.

Tasks come in different units (an lm_loss task in nats/token, a multiple-choice task's
accuracy in [0, 1]); a plain mean of raw scores is in effect the task with the largest
spread. Every objective is put in loss form (direction.sign * score, lower is better)
and rescaled by the spread of the anchor trials on the search split:

    normalized = (loss - best anchor loss) / (worst anchor loss - best anchor loss)

so 0 is the best anchor on that task and 1 the worst. The anchors are the search's first
trials, one per pool checkpoint: with baselines on, the single checkpoints (scored on the
search split before anything else, the same in every search on the pool). So two searches
on one pool and task set share the scale, and their hypervolumes, taken against the fixed
reference point REFERENCE on every task (10% past the worst single), compare directly.
Without baselines the anchors are the first trials the strategy proposed: comparable within
the search only. A task on which every anchor scored the same is shifted, not scaled.
Raw scores stay in every result; only the derived numbers use this scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from contracts import Objective, SearchSpec, TrialResult, TrialStatus
from proposer.scalarize import loss_vector

# Hypervolume reference point on every normalized objective: 10% of the anchors' range
# past the worst anchor, as the search's reference point always was.
REFERENCE = 1.1


@dataclass(frozen=True)
class Normalization:
    objectives: tuple[Objective, ...]
    ideal: tuple[float, ...]  # best anchor loss per objective (loss form)
    scale: tuple[float, ...]  # worst minus best anchor loss (1.0 where they are equal)
    anchors: tuple[str, ...] = ()  # trial ids the scale was taken from

    @classmethod
    def from_anchors(cls, objectives: Sequence[Objective], anchors: Sequence[TrialResult]) -> "Normalization | None":
        """The scale of the ok anchor trials; None when none succeeded."""
        ok = [r for r in anchors if r.status is TrialStatus.ok]
        if not ok:
            return None
        columns = list(zip(*(loss_vector(r.scores, objectives) for r in ok)))
        spans = [max(c) - min(c) for c in columns]
        return cls(tuple(objectives), tuple(min(c) for c in columns),
                   tuple(s if s > 1e-12 else 1.0 for s in spans), tuple(r.trial_id for r in ok))

    def losses(self, scores: Mapping[str, float]) -> list[float]:
        """Normalized loss per objective (0: best anchor, 1: worst anchor; lower is better)."""
        return [(v - lo) / s for v, lo, s in zip(loss_vector(scores, self.objectives), self.ideal, self.scale)]

    def macro(self, scores: Mapping[str, float]) -> float:
        """The normalized macro-average: the mean of `losses` (lower is better)."""
        values = self.losses(scores)
        return sum(values) / len(values)

    def task_weights(self) -> list[float]:
        """d(macro)/d(raw score) per objective: the macro is sum_t w_t * score_t + const."""
        n = len(self.objectives)
        return [o.direction.sign / (n * s) for o, s in zip(self.objectives, self.scale)]

    @property
    def reference(self) -> list[float]:
        return [REFERENCE] * len(self.objectives)

    def as_dict(self) -> dict:
        return {
            "scheme": "(direction * score - best anchor) / (worst anchor - best anchor), per task, search split",
            "anchors": list(self.anchors),
            "ideal": {o.name: v for o, v in zip(self.objectives, self.ideal)},
            "scale": {o.name: v for o, v in zip(self.objectives, self.scale)},
            "reference": REFERENCE,
        }


def n_anchor_trials(spec: SearchSpec) -> int:
    """The first trials, one per pool checkpoint: the singles when baselines are on."""
    return min(spec.budget, len(spec.pool.checkpoints))


def normalization_of(spec: SearchSpec, results: Sequence[TrialResult]) -> Normalization | None:
    """The search's scale once every anchor trial has settled (None before)."""
    by_number = {r.proposal.number: r for r in results}
    anchors = [by_number.get(i) for i in range(n_anchor_trials(spec))]
    if None in anchors:
        return None
    return Normalization.from_anchors(spec.objectives, anchors)
