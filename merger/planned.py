"""A TensorPlan (one tensor's merge, every parameter resolved) and running one exactly as mergekit 0.1.5 does.

Plans come from a search's weights (MergeMethod.plan: the same for every tensor) or from a
mergekit config (merger.mergekit_config: per tensor, gradients and filters resolved).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from merger import exact
from merger.exact import Scratch
from merger.pool import CheckpointPool


@dataclass(frozen=True)
class TensorPlan:
    """One tensor's merge with every parameter resolved (mergekit's per-tensor task)."""

    inputs: tuple[int, ...]  # pool indices, in mergekit's order (the base included where listed)
    base: int | None
    per_input: Mapping[str, tuple]  # parameter -> one value per input
    shared: Mapping[str, Any]
    compute: torch.dtype | None  # mergekit's `dtype` (None: each tensor's stored dtype)
    kind: exact.TaskVectorKind | None = None  # None: linear
    # Integer/bool tensors that differ between inputs: mergekit refuses them ("error"); a search
    # takes the first checkpoint's ("first").
    buffers: str = "error"


def merge_planned(pool: CheckpointPool, plan: TensorPlan, name: str, out: torch.Tensor, scratch: Scratch,
                  generator: torch.Generator | None = None) -> None:
    """Fill `out` with exactly what mergekit computes for tensor `name` under `plan` (merger/exact.py)."""
    xs = [pool.tensor(i, name) for i in plan.inputs]
    if not pool.dtype(name).is_floating_point:
        exact.copy_buffer(out, xs if plan.buffers == "error" else xs[:1], name)
        return
    compute = plan.compute or pool.dtype(name)
    with torch.no_grad():
        if plan.kind is None:
            exact.linear(out, xs, plan.per_input["weight"], plan.shared["normalize"], compute, scratch)
            return
        others = [k for k, i in enumerate(plan.inputs) if i != plan.base]
        densities = plan.per_input.get("density") or (1.0,) * len(plan.inputs)
        exact.task_vectors(
            out, pool.tensor(plan.base, name), [xs[k] for k in others], plan.kind,
            [plan.per_input["weight"][k] for k in others], [densities[k] for k in others],
            plan.shared["normalize"], plan.shared["rescale"], plan.shared["lambda"], plan.shared["int8_mask"],
            compute, scratch, generator,
        )
