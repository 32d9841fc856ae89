"""Coordinates for weights on the simplex (non-negative, summing to 1)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from proposer.strategies.base import Weights


# Stick breaking maps u in [0, 1]^(n-1) one-to-one onto the n-simplex: weight i
# takes a fraction v_i of what the earlier ones left. With v_i = 1 - (1 - u_i)^(1/(n-1-i))
# (the inverse CDF of Beta(1, n-1-i)), uniform u gives the uniform (Dirichlet(1))
# distribution on the simplex, so no corner is favoured a priori. Being invertible,
# it recovers the coordinates of any stored weights.


def from_sticks(u: Sequence[float]) -> Weights:
    n = len(u) + 1
    weights, rest = [], 1.0
    for i, ui in enumerate(u):
        take = rest * (1.0 - (1.0 - min(max(ui, 0.0), 1.0)) ** (1.0 / (n - 1 - i)))
        weights.append(take)
        rest -= take
    weights.append(max(rest, 0.0))
    return tuple(weights)


def to_sticks(weights: Sequence[float]) -> list[float]:
    n = len(weights)
    u, rest = [], 1.0
    for i in range(n - 1):
        fraction = min(max(weights[i] / rest, 0.0), 1.0) if rest > 0.0 else 0.0
        u.append(1.0 - (1.0 - fraction) ** (n - 1 - i))
        rest -= weights[i]
    return u


def from_logits(z: Sequence[float]) -> Weights:
    """Additive log-ratio coordinates: w = softmax([z, 0]); z = 0 is the uniform soup."""
    logits = np.append(np.asarray(z, dtype=float), 0.0)
    e = np.exp(logits - logits.max())
    return tuple(float(v) for v in e / e.sum())
