"""Is one merge really better than another on held-out text? A paired bootstrap over windows.

Both models are scored on the same evaluation windows, so the comparison is paired:
resampling windows (with replacement, within each task) and recomputing both
models' macro-average on the same resample cancels the variation that comes from
which windows happen to be easy. The interval is the percentile interval of the
resampled improvements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Per task: (summed NLL per window, predicted tokens per window), same windows for every model.
WindowLosses = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Improvement:
    """How much lower `candidate`'s macro-average NLL is than `baseline`'s (positive: better)."""

    mean: float
    low: float
    high: float
    confidence: float
    windows: int
    resamples: int

    @property
    def significant(self) -> bool:
        """The interval excludes zero on the side of an improvement."""
        return self.low > 0

    def as_dict(self) -> dict:
        return {"improvement": self.mean, "ci_low": self.low, "ci_high": self.high, "confidence": self.confidence,
                "windows": self.windows, "resamples": self.resamples, "significant": self.significant}


def macro_nll(losses: WindowLosses) -> float:
    """Mean over tasks of each task's token-weighted mean NLL (what the search scores)."""
    return float(np.mean([nll.sum() / tokens.sum() for nll, tokens in losses.values()]))


def paired_bootstrap(
    baseline: WindowLosses, candidate: WindowLosses, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> Improvement:
    if baseline.keys() != candidate.keys() or not baseline:
        raise ValueError("both models must be scored on the same, non-empty set of tasks")
    rng = np.random.default_rng(seed)
    per_task = []
    for task, (base_nll, tokens) in baseline.items():
        cand_nll, cand_tokens = candidate[task]
        if len(cand_nll) != len(base_nll) or not np.array_equal(cand_tokens, tokens):
            raise ValueError(f"task {task!r}: the two models were not scored on the same windows")
        picks = rng.integers(0, len(base_nll), size=(resamples, len(base_nll)))
        # Token-weighted, like the score itself: sum of NLL over sum of tokens of the resample.
        per_task.append((base_nll[picks].sum(1) - cand_nll[picks].sum(1)) / tokens[picks].sum(1))
    resampled = np.mean(per_task, axis=0)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return Improvement(
        mean=macro_nll(baseline) - macro_nll(candidate), low=float(low), high=float(high), confidence=confidence,
        windows=sum(len(nll) for nll, _ in baseline.values()), resamples=resamples,
    )
