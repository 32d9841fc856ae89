"""Coordinates for weights on the simplex (non-negative, summing to 1)."""

from __future__ import annotations

from functools import lru_cache
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


@lru_cache(maxsize=64)
def helmert_basis(n: int) -> np.ndarray:
    """n x (n-1) orthonormal columns orthogonal to (1, ..., 1): the Helmert contrasts
    (column k compares weight k with the mean of weights 0..k-1). Read-only (cached)."""
    basis = np.zeros((n, n - 1))
    for k in range(1, n):
        basis[:k, k - 1] = 1.0 / k
        basis[k, k - 1] = -1.0
        basis[:, k - 1] /= np.linalg.norm(basis[:, k - 1])
    basis.flags.writeable = False
    return basis


def from_ilr(z: Sequence[float]) -> Weights:
    """Isometric log-ratio coordinates (Egozcue et al., 2003): w = softmax(V z), V the Helmert
    basis. V is orthonormal, so an isotropic z gives centred log-ratios whose distribution no
    permutation of the checkpoints changes: no checkpoint is favoured. z = 0 is the uniform soup."""
    z = np.asarray(z, dtype=float)
    logits = helmert_basis(len(z) + 1) @ z
    e = np.exp(logits - logits.max())
    return tuple(float(v) for v in e / e.sum())


def to_ilr(weights: Sequence[float]) -> np.ndarray:
    """The inverse of from_ilr for weights with no zero (V^T of the log-weights)."""
    logs = np.log(np.asarray(weights, dtype=float))
    return helmert_basis(len(logs)).T @ logs
