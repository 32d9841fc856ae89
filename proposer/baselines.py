"""The paper's baselines: every single checkpoint, the uniform soup, a greedy soup;
optionally each checkpoint shrunk towards the uniform soup.

One expression serves both merge modes. A single is one-hot (weight 1 on that
checkpoint: the checkpoint itself, also under task arithmetic); under task
arithmetic the base's single is all zeros (base + nothing: the base model). The
uniform soup is 1/m on each of the m searched checkpoints: their plain average
in both modes. With weights per layer group every baseline has the same weights in
each group: it is the merge of the whole model the paper evaluates.

A shrunk single moves a checkpoint towards the uniform soup. On the simplex that
mixes the soup in, (1 - s) * single + s * uniform, which also takes away part of the
checkpoint's own fine-tuning; under task arithmetic the others' share of the soup is
added on top and the checkpoint keeps its own task vector whole. Only the second can
beat a specialist on its own task as well as on the others (measured on the tiny demo
pool: a specialist plus 0.1 of each other task vector did so for two of four).
"""

from __future__ import annotations

from typing import Sequence

from contracts import Source
from proposer.space import WeightSpace
from proposer.strategies.base import Weights


def fixed_baselines(space: WeightSpace, shrink: float = 0.0) -> list[tuple[Source, Weights]]:
    """(source, pool weights): the singles in pool order, then the uniform soup, then (shrink > 0)
    each searched checkpoint moved `shrink` towards the uniform soup."""
    baselines = []
    for i, name in enumerate(space.names):
        # One-hot on the checkpoint (the base: all zeros), the same in every layer group.
        weights = [1.0 if space.searched[j] == i else 0.0 for j in range(space.block)]
        baselines.append((Source(kind="single", checkpoint=name), space.everywhere(weights)))
    if space.block > 1:  # with one searched checkpoint the uniform soup is its single
        uniform = 1.0 / space.block
        baselines.append((Source(kind="uniform"), space.everywhere([uniform] * space.block)))
        if shrink > 0:
            added = shrink * uniform  # each other checkpoint's weight
            own = 1.0 - shrink + added if space.normalize else 1.0  # task arithmetic: keep it whole
            for j, i in enumerate(space.searched):
                weights = [own if k == j else added for k in range(space.block)]
                baselines.append((Source(kind="shrunk", checkpoint=space.names[i]), space.everywhere(weights)))
    return baselines


def soup_weights(members: Sequence[int], dim: int) -> Weights:
    """Uniform average of these searched checkpoints, in strategy coordinates."""
    return tuple(1.0 / len(members) if j in members else 0.0 for j in range(dim))


def greedy_candidate(
    single_losses: Sequence[float | None], step_losses: Sequence[float | None]
) -> tuple[int, ...] | None:
    """The next greedy-soup candidate (Wortsman et al., 2022), or None when done.

    Checkpoints are tried best single first; each step evaluates the soup so far
    plus the next checkpoint and keeps it if that uniform average beats the best
    soup so far. `single_losses`: per searched checkpoint, None if it failed (left
    out). `step_losses`: the candidates evaluated so far, in order, None if failed.
    Returns the members (searched indices) of the next candidate.
    """
    order = sorted(
        (j for j, loss in enumerate(single_losses) if loss is not None),
        key=lambda j: (single_losses[j], j),
    )
    if not order:
        return None
    kept, best = [order[0]], single_losses[order[0]]
    for step, loss in enumerate(step_losses, start=1):
        if loss is not None and loss < best:
            kept, best = kept + [order[step]], loss
    following = len(step_losses) + 1
    if following >= len(order):
        return None
    return tuple(sorted(kept + [order[following]]))
