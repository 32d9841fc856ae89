"""Task-vector merge methods: task_arithmetic, ties, dare_linear, dare_ties (mergekit's
generalized task arithmetic), each a small registered class declaring its parameters.

    merged = base + lambda * sum_i w_i * sparsify(x_i - base) [/ sum of weights]

TIES keeps the top `density` share of each task vector by magnitude and sums only the
entries agreeing with the elected sign; DARE drops each entry with probability
1 - density and rescales the rest to the task vector's L1 norm; dare_ties adds the
sign election. Defaults are mergekit 0.1.5's. The merge runs tensor by tensor into
given outputs, in runs of the flattened tensor with reused buffers (merger/exact.py):
no stack of N whole models. A search sets `weight` through the trial's weights and
the base through MergeSpec.base (normalize: false there); the others through
`make_method(pool, spec, parameters={...})`, each a scalar or one value per checkpoint.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from merger import exact
from merger.exact import Scratch
from merger.methods import MergeMethod, register_method
from merger.parameters import Parameter, Scope

WEIGHT = Parameter("weight", float, Scope.NON_BASE, help="the task vector's coefficient")
DENSITY = Parameter("density", float, Scope.NON_BASE, 1.0, search_range=(0.05, 1.0),
                    help="share of the task vector kept (1: all)")
LAMBDA = Parameter("lambda", float, Scope.SHARED, 1.0, help="scales the merged task vector")
INT8_MASK = Parameter("int8_mask", bool, Scope.SHARED, False, help="sign masks in int8 (saves memory, same result)")


def _normalize(default: bool) -> Parameter:
    return Parameter("normalize", bool, Scope.SHARED, default, help="divide by the sum of the (kept) weights")


def _rescale(default: bool) -> Parameter:
    return Parameter("rescale", bool, Scope.SHARED, default, help="rescale kept entries to the task vector's L1 norm")


class TaskVectorMethod(MergeMethod):
    """Base of the generalized task arithmetic methods: the merge is mergekit's, exactly."""

    needs_base = True
    kind = exact.TASK_ARITHMETIC

    def check_group(self, weights: Sequence[float]) -> list[float]:
        w = super().check_group(weights)
        w[self.pool.names.index(self.spec.base)] = 0.0  # the base's own weight is not read
        return w

    def prepare(self, weights: Sequence[float]) -> Any:
        return self.plan(weights)

    def merge_tensor(self, prepared: Any, name: str, out: torch.Tensor, scratch: Scratch) -> None:
        self.merge_planned(prepared, name, out, scratch)


@register_method("task_arithmetic")
class TaskArithmetic(TaskVectorMethod):
    # density is declared (as mergekit does) but task arithmetic sparsifies nothing.
    parameters = (WEIGHT, DENSITY, _normalize(False), LAMBDA, _rescale(False), INT8_MASK)
    kind = exact.TASK_ARITHMETIC


@register_method("ties")
class Ties(TaskVectorMethod):
    parameters = (WEIGHT, DENSITY, _normalize(True), LAMBDA, _rescale(False), INT8_MASK)
    kind = exact.TIES


@register_method("dare_linear")
class DareLinear(TaskVectorMethod):
    parameters = (WEIGHT, DENSITY, _normalize(False), LAMBDA, _rescale(True), INT8_MASK)
    kind = exact.DARE_LINEAR


@register_method("dare_ties")
class DareTies(TaskVectorMethod):
    parameters = (WEIGHT, DENSITY, _normalize(False), LAMBDA, _rescale(True), INT8_MASK)
    kind = exact.DARE_TIES
