"""Merge methods: a registry of small classes (mergekit style), linear first.

Each method declares its parameters (merger.parameters: name, type, scope, default,
search range) as mergekit's methods do. It merges two ways: `merge_tensor` is the
search's hot path below; `merge_planned` computes exactly what mergekit 0.1.5 computes
for one tensor given resolved per-tensor parameters (a TensorPlan, merger/exact.py):
exports and `recycle merge --config` write that, so `mergekit-yaml` reproduces them.
Task-vector methods (task_arithmetic, ties, dare_linear, dare_ties) live in
merger/task_vectors.py.

A trial merges into preallocated outputs in place:

    acc.copy_(x_0).mul_(w_0); acc.add_(x_i, alpha=w_i) for each other checkpoint

per tensor, or per segment (a run of tensors stored back to back in every checkpoint,
merged as one flat tensor when the outputs are laid out alike: merger/segments.py), in
chunks of a million elements, so the accumulator stays in cache while every checkpoint
streams through it once. No torch.stack of N inputs (mergekit's N+1x memory), no
per-trial allocation: scratch buffers are kept and reused, so the working set is one
model plus a few MB, whatever the number of checkpoints. Eager fp32 merges reach
~0.6x memcpy bandwidth, eager bf16 (conversion-bound) ~0.2x; on the CPU half-precision
and large fp32 merges go through a compiled one-pass kernel instead (merger/fused.py:
~0.9-1.1x over a segment), eager torch being the fallback.

One MergeMethod instance owns one scratch: use one instance per thread.
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch

from contracts.models import MergeSpec

from merger import exact
from merger.errors import MergerError, MethodError, WeightsError
from merger.exact import Scratch
from merger.layers import group_ranges, group_runs, layer_count, tensor_groups, tensor_module_classes
from merger.linear_kernels import _copy_chunks, linear_combination
from merger.parameters import Parameter, Scope
from merger.planned import TensorPlan, merge_planned
from merger.pool import CheckpointPool
from merger.segments import allocate_flat, flat_view

MERGE_METHODS: dict[str, type["MergeMethod"]] = {}


def register_method(name: str) -> Callable[[type["MergeMethod"]], type["MergeMethod"]]:
    def register(cls: type[MergeMethod]) -> type[MergeMethod]:
        cls.name = name
        MERGE_METHODS[name] = cls
        return cls

    return register


def get_method(name: str) -> type["MergeMethod"]:
    try:
        return MERGE_METHODS[name]
    except KeyError:
        known = ", ".join(sorted(MERGE_METHODS))
        raise MethodError(f"unknown merge method {name!r}; known methods: {known}") from None


def make_method(pool: CheckpointPool, spec: MergeSpec, parameters: Mapping[str, Any] | None = None) -> "MergeMethod":
    return get_method(spec.method)(pool, spec, parameters)


class MergeMethod:
    """Base class: validate weights, then merge tensor by tensor into given outputs.

    Subclasses implement `prepare` (one group's weights -> whatever its merge needs, computed
    once) and `merge_tensor` (fill one output tensor), and declare their `parameters`.

    Weights per layer group (spec.weights per layer_groups, K groups) or per module class
    (per module_classes, 4): a merge takes K x N weights, group-major, and merges each tensor
    with its group's (merger.layers); `plan`, `prepare` and `check_group` read one group's N
    weights, `check_weights` and `merge_into` all of them. With one group (per model) the two
    are the same.
    """

    name: ClassVar[str]
    # What the method reads (mergekit's ParameterSpecs), `weight` included.
    parameters: ClassVar[tuple[Parameter, ...]] = ()
    # Parameters a search sets through the MergeSpec and the weights, not through `parameters=`.
    set_by_spec: ClassVar[tuple[str, ...]] = ("weight",)
    # Which mergekit kernel `merge_planned` runs (None: linear).
    kind: ClassVar[exact.TaskVectorKind | None] = None
    needs_base: ClassVar[bool] = False

    def __init__(self, pool: CheckpointPool, spec: MergeSpec, parameters: Mapping[str, Any] | None = None):
        if spec.base is not None and spec.base not in pool.names:
            raise MethodError(
                f"merge base {spec.base!r} is not a checkpoint of pool {pool.spec.name!r} ({', '.join(pool.names)})"
            )
        if self.needs_base and spec.base is None:
            raise MethodError(f"merge method {self.name!r} needs a base: name a checkpoint of the pool as merge.base")
        self.pool = pool
        self.spec = spec
        self.scratch = Scratch()
        self.values = self._check_parameters(dict(parameters or {}))
        self.generator: torch.Generator | None = None  # random methods: None draws from torch's global RNG
        self.n_groups = spec.weights.n_groups
        self.group_of = self._tensor_groups()  # tensor -> its weight vector (empty: one group)
        # Per pool segment: its runs of tensors of one group, as (group, first, end) element ranges.
        self._runs = [group_runs(segment, self.group_of) for segment in pool.segments]

    def _tensor_groups(self) -> dict[str, int]:
        """Each pool tensor's group: its module class, its layer group, or none (per model)."""
        names, layout = self.pool.tensor_names, self.spec.weights
        if layout.per == "module_classes":
            try:
                return tensor_module_classes(names)
            except MethodError as error:
                raise MethodError(f"pool {self.pool.spec.name!r}: {error}") from None
        if self.n_groups == 1:
            return {}
        layers = layer_count(self.pool.config_dir, names)
        if self.n_groups > layers:
            raise MethodError(f"weights in {self.n_groups} layer groups, but the models of pool "
                              f"{self.pool.spec.name!r} have {layers} layer(s)")
        return tensor_groups(names, layers, self.n_groups)

    def _check_parameters(self, given: dict[str, Any]) -> dict[str, Any]:
        """Each settable parameter's value: a scalar, or for per-input ones a list (one per checkpoint)."""
        settable = {p.name: p for p in self.parameters if p.name not in self.set_by_spec}
        unknown = sorted(set(given) - set(settable))
        if unknown:
            raise MethodError(
                f"merge method {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"it takes: {', '.join(settable) or 'none besides the weights'}"
            )
        values = {}
        for name, p in settable.items():
            value = given.get(name, p.default)
            if p.per_input and isinstance(value, (list, tuple)):
                if len(value) != len(self.pool):
                    raise MethodError(f"parameter {name!r}: {len(value)} values for the {len(self.pool)} checkpoints")
                value = tuple(p.validate(v, f" of checkpoint {n!r}") for v, n in zip(value, self.pool.names))
            else:
                value = p.validate(value)
            values[name] = value
        return values

    def value(self, name: str, index: int) -> Any:
        v = self.values[name]
        return v[index] if isinstance(v, tuple) else v

    def compute_dtype(self) -> torch.dtype:
        """mergekit's `dtype` for this spec: fp32, or the pool's own when told to sum in it."""
        pool_dtype = self.pool.float_dtype or torch.float32
        return pool_dtype if self.spec.accumulate == "pool" else torch.float32

    def plan(self, weights: Sequence[float]) -> TensorPlan:
        """The merge of one group's weights as mergekit runs it (the same plan for every tensor
        of the group): what exports write and describe in their mergekit.yaml."""
        w = self.check_group(weights)
        if self.spec.base is None:
            # Weights are already on the simplex when spec.normalize: mergekit must not divide again.
            return TensorPlan(tuple(range(len(w))), None, {"weight": tuple(w)}, {"normalize": False},
                              self.compute_dtype(), buffers="first")
        base = self.pool.names.index(self.spec.base)
        inputs = tuple(i for i in range(len(w)) if i != base)
        per_input = {"weight": tuple(w[i] for i in inputs)}
        per_input.update({name: tuple(self.value(name, i) for i in inputs)
                          for name in self.values if self._declared(name).per_input})
        shared = {"normalize": False, "lambda": 1.0, "rescale": False, "int8_mask": False}
        shared.update({name: v for name, v in self.values.items() if not self._declared(name).per_input})
        return TensorPlan(inputs + (base,), base, per_input, shared, self.compute_dtype(),
                          self.kind or exact.TASK_ARITHMETIC, buffers="first")

    @property
    def mergekit_name(self) -> str:
        return self.name

    def _declared(self, name: str) -> Parameter:
        return next(p for p in self.parameters if p.name == name)

    def merge_planned(self, plan: TensorPlan, name: str, out: torch.Tensor, scratch: Scratch) -> None:
        """Fill `out` with exactly what mergekit computes for tensor `name` under `plan`."""
        merge_planned(self.pool, plan, name, out, scratch, self.generator)

    def check_weights(self, weights: Sequence[float]) -> list[float]:
        """`check_group` on each group's weights (K x N, group-major), concatenated."""
        if self.n_groups == 1:
            return self.check_group(weights)
        return [x for g, w in enumerate(self.split(weights)) for x in self._check_in_group(w, g)]

    def _check_in_group(self, w: list, group: int) -> list[float]:
        try:
            return self.check_group(w)
        except WeightsError as error:
            raise WeightsError(f"{self.spec.weights.group_label(group)}: {error}") from None

    def split(self, weights: Sequence[float]) -> list[list[float]]:
        """Weights cut into their groups (layer groups or module classes: one list of N per
        group), not checked otherwise."""
        w, n = list(weights), len(self.pool)
        if self.n_groups == 1:
            return [w]
        if len(w) != n * self.n_groups:
            raise WeightsError(f"got {len(w)} weights for {self.n_groups} {self.spec.weights.groups_word} x the {n} "
                               f"checkpoints of pool {self.pool.spec.name!r}: {n * self.n_groups} expected")
        return [w[g * n:(g + 1) * n] for g in range(self.n_groups)]

    def layer_ranges(self) -> list[tuple[int, int]]:
        """[start, end) layers of each layer group (per model or module class: every layer, once)."""
        layers = layer_count(self.pool.config_dir, self.pool.tensor_names)
        return group_ranges(layers, self.n_groups) if self.spec.weights.per == "layer_groups" else [(0, layers)]

    def check_group(self, weights: Sequence[float]) -> list[float]:
        """One finite weight per checkpoint; on the simplex (clipped, renormalized) when spec.normalize."""
        names = self.pool.names
        try:
            w = [float(x) for x in weights]
        except (TypeError, ValueError):
            raise WeightsError(f"weights must be numbers, got {weights!r}") from None
        if len(w) != len(names):
            raise WeightsError(
                f"got {len(w)} weights for the {len(names)} checkpoints of pool {self.pool.spec.name!r} ({', '.join(names)})"
            )
        for name, x in zip(names, w):
            if not math.isfinite(x):
                raise WeightsError(f"weight of checkpoint {name!r} is {x}: weights must be finite")
        if self.spec.normalize:
            w = [max(x, 0.0) for x in w]
            total = sum(w)
            if total <= 0.0:
                raise WeightsError("all weights are zero or negative: normalized weights need a positive sum")
            w = [x / total for x in w]
        return w

    def prepare(self, weights: Sequence[float]) -> Any:
        return self.check_weights(weights)

    def merge_tensor(self, prepared: Any, name: str, out: torch.Tensor, scratch: Scratch) -> None:
        raise NotImplementedError

    def merge_segment(self, prepared: Any, number: int, out: torch.Tensor, scratch: Scratch,
                      start: int = 0, end: int | None = None) -> bool:
        """Fill the flat output of elements [start, end) of pool segment `number` at once; False:
        this method merges tensor by tensor (only elementwise methods can treat a segment as one tensor)."""
        return False

    def merge_into(self, weights: Sequence[float], out: Mapping[str, torch.Tensor], scratch: Scratch | None = None) -> None:
        """Merge every pool tensor into `out[name]` in place (extra entries of `out` are ignored).

        Where `out` lays a segment's tensors out like the pool does (merger.segments), the
        segment is merged as one tensor: one kernel call instead of one per tensor (per layer
        group or module class: one per run of the segment's tensors in one group)."""
        prepared = [self.prepare(w) for w in self.split(weights)]  # prepare checks each group
        check_outputs(self.pool, out)
        scratch = scratch if scratch is not None else self.scratch
        with torch.no_grad():  # outputs may be a live model's parameters
            merged: set[str] = set()
            for number, segment in enumerate(self.pool.segments):
                flat = flat_view(out, segment)
                if flat is None:
                    continue
                for group, first, end, names in self._runs[number]:
                    whole = first == 0 and end == segment.numel
                    piece = flat if whole else flat[first:end]
                    if self.merge_segment(prepared[group], number, piece, scratch, first, end):
                        merged.update(names)
            for name in self.pool.tensor_names:
                if name not in merged:
                    self.merge_tensor(prepared[self.group_of.get(name, 0)], name, out[name], scratch)


@register_method("linear")
class Linear(MergeMethod):
    """merged = sum_i w_i x_i.

    With spec.base (task arithmetic, weights unnormalized):
        merged = base + sum_{i != base} w_i (x_i - base)
    The base's own weight is ignored (check_weights reports it as 0). We compute it as
    (1 - sum_{i != base} w_i) * base + sum_{i != base} w_i x_i: the same linear
    combination, with no per-tensor x_i - base temporaries (so within rounding of what
    mergekit's task_arithmetic computes; exports run `merge_planned`, mergekit's own order).
    """

    parameters = (
        Parameter("weight", float, Scope.INPUT, help="the checkpoint's coefficient"),
        Parameter("normalize", bool, Scope.SHARED, True, help="divide by the sum of the weights"),
    )
    # A search's linear weights are normalized by MergeSpec.normalize (onto the simplex, clipped).
    set_by_spec = ("weight", "normalize")

    def __init__(self, pool: CheckpointPool, spec: MergeSpec, parameters: Mapping[str, Any] | None = None):
        super().__init__(pool, spec, parameters)
        self.base_index = None if spec.base is None else pool.names.index(spec.base)

    @property
    def mergekit_name(self) -> str:
        return "linear" if self.base_index is None else "task_arithmetic"

    def check_group(self, weights: Sequence[float]) -> list[float]:
        w = super().check_group(weights)
        if self.base_index is not None:
            w[self.base_index] = 0.0
        return w

    def coefficients(self, weights: Sequence[float]) -> list[float]:
        """One group's coefficients (the base's: 1 minus the others')."""
        c = self.check_group(weights)
        if self.base_index is not None:
            c[self.base_index] = 1.0 - sum(c)
        return c

    def prepare(self, weights: Sequence[float]) -> list[tuple[int, float]]:
        # Zero coefficients cost a full read of a checkpoint for nothing: skip them.
        return [(i, c) for i, c in enumerate(self.coefficients(weights)) if c != 0.0]

    def merge_tensor(self, prepared: list[tuple[int, float]], name: str, out: torch.Tensor, scratch: Scratch) -> None:
        pool = self.pool
        if not pool.dtype(name).is_floating_point:
            # Integer/bool buffers are not averaged: take the first checkpoint's.
            _copy_chunks(out, pool.tensor(0, name), scratch)
            return
        sources = [(pool.tensor(i, name), c) for i, c in prepared]
        linear_combination(out, sources, scratch, accumulate_fp32=self.spec.accumulate == "float32")

    def merge_segment(self, prepared: list[tuple[int, float]], number: int, out: torch.Tensor, scratch: Scratch,
                      start: int = 0, end: int | None = None) -> bool:
        whole = start == 0 and end in (None, self.pool.segments[number].numel)
        sources = [(self.pool.segment(i, number) if whole else self.pool.segment(i, number)[start:end], c)
                   for i, c in prepared]
        linear_combination(out, sources, scratch, accumulate_fp32=self.spec.accumulate == "float32")
        return True


def check_outputs(pool: CheckpointPool, out: Mapping[str, torch.Tensor]) -> None:
    for name in pool.tensor_names:
        o = out.get(name)
        if o is None:
            raise MergerError(f"outputs lack tensor {name!r} of pool {pool.spec.name!r}")
        if o.shape != pool.shape(name):
            raise MergerError(f"output tensor {name!r} has shape {list(o.shape)}, the pool's is {list(pool.shape(name))}")
        if o.dtype.is_floating_point != pool.dtype(name).is_floating_point:
            raise MergerError(f"output tensor {name!r} has dtype {o.dtype}, incompatible with the pool's {pool.dtype(name)}")


def allocate_outputs(pool: CheckpointPool, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """One uninitialized tensor per pool tensor; floating ones in `dtype` if given. The
    tensors of each pool segment are views of one buffer, so merges take the flat path."""
    shapes = {name: pool.shape(name) for name in pool.tensor_names}
    out = allocate_flat(pool.segments, shapes, lambda segment: dtype or segment.dtype, torch.device(device))
    for name in pool.tensor_names:
        if name in out:
            continue
        t_dtype = pool.dtype(name)
        if dtype is not None and t_dtype.is_floating_point:
            t_dtype = dtype
        out[name] = torch.empty(pool.shape(name), dtype=t_dtype, device=device)
    return out


def merge_into(
    pool: CheckpointPool,
    spec: MergeSpec,
    weights: Sequence[float],
    out: Mapping[str, torch.Tensor],
    scratch: Scratch | None = None,
) -> None:
    """One-shot merge. In a loop, keep a `make_method(pool, spec)` (or pass a Scratch):
    this builds a fresh method, whose scratch buffers are allocated again."""
    make_method(pool, spec).merge_into(weights, out, scratch)
