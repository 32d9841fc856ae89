"""Merge methods: a registry of small classes (mergekit style), linear first.

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

from merger import fused
from merger.errors import MergerError, MethodError, WeightsError
from merger.pool import CheckpointPool
from merger.segments import allocate_flat, flat_view

# Elements per chunk: on the CPU 1M fp32 elements (4 MB) keep the accumulator and the
# conversion buffer in L3; on an accelerator chunks only bound the scratch size.
CPU_CHUNK_ELEMENTS = 1 << 20
DEVICE_CHUNK_ELEMENTS = 1 << 26

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


def make_method(pool: CheckpointPool, spec: MergeSpec) -> "MergeMethod":
    return get_method(spec.method)(pool, spec)


class Scratch:
    """Grow-only reusable buffers, keyed by role, dtype and device."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}

    def get(self, role: str, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (role, dtype, device)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < numel:
            buf = self._buffers[key] = torch.empty(numel, dtype=dtype, device=device)
        return buf[:numel]


class MergeMethod:
    """Base class: validate weights, then merge tensor by tensor into given outputs.

    Subclasses implement `prepare` (weights -> whatever one merge needs, computed once)
    and `merge_tensor` (fill one output tensor).
    """

    name: ClassVar[str]

    def __init__(self, pool: CheckpointPool, spec: MergeSpec):
        if spec.base is not None and spec.base not in pool.names:
            raise MethodError(
                f"merge base {spec.base!r} is not a checkpoint of pool {pool.spec.name!r} ({', '.join(pool.names)})"
            )
        self.pool = pool
        self.spec = spec
        self.scratch = Scratch()

    def check_weights(self, weights: Sequence[float]) -> list[float]:
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

    def merge_segment(self, prepared: Any, number: int, out: torch.Tensor, scratch: Scratch) -> bool:
        """Fill the flat output of pool segment `number` at once; False: this method merges
        tensor by tensor (only elementwise methods can treat a segment as one tensor)."""
        return False

    def merge_into(self, weights: Sequence[float], out: Mapping[str, torch.Tensor], scratch: Scratch | None = None) -> None:
        """Merge every pool tensor into `out[name]` in place (extra entries of `out` are ignored).

        Where `out` lays a segment's tensors out like the pool does (merger.segments), the
        segment is merged as one tensor: one kernel call instead of one per tensor."""
        prepared = self.prepare(weights)
        check_outputs(self.pool, out)
        scratch = scratch if scratch is not None else self.scratch
        with torch.no_grad():  # outputs may be a live model's parameters
            merged: set[str] = set()
            for number, segment in enumerate(self.pool.segments):
                flat = flat_view(out, segment)
                if flat is not None and self.merge_segment(prepared, number, flat, scratch):
                    merged.update(segment.names)
            for name in self.pool.tensor_names:
                if name not in merged:
                    self.merge_tensor(prepared, name, out[name], scratch)


@register_method("linear")
class Linear(MergeMethod):
    """merged = sum_i w_i x_i.

    With spec.base (task arithmetic, weights unnormalized):
        merged = base + sum_{i != base} w_i (x_i - base)
    The base's own weight is ignored (check_weights reports it as 0). We compute it as
    (1 - sum_{i != base} w_i) * base + sum_{i != base} w_i x_i: the same linear
    combination, with no per-tensor x_i - base temporaries.
    """

    def __init__(self, pool: CheckpointPool, spec: MergeSpec):
        super().__init__(pool, spec)
        self.base_index = None if spec.base is None else pool.names.index(spec.base)

    def check_weights(self, weights: Sequence[float]) -> list[float]:
        w = super().check_weights(weights)
        if self.base_index is not None:
            w[self.base_index] = 0.0
        return w

    def coefficients(self, weights: Sequence[float]) -> list[float]:
        c = self.check_weights(weights)
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

    def merge_segment(self, prepared: list[tuple[int, float]], number: int, out: torch.Tensor, scratch: Scratch) -> bool:
        sources = [(self.pool.segment(i, number), c) for i, c in prepared]
        linear_combination(out, sources, scratch, accumulate_fp32=self.spec.accumulate == "float32")
        return True


def linear_combination(
    out: torch.Tensor,
    sources: Sequence[tuple[torch.Tensor, float]],
    scratch: Scratch,
    accumulate_fp32: bool = True,
) -> None:
    """out = sum of c * x over `sources`, in place, allocating nothing once warm."""
    # Sum straight into the output when it is wide enough, or when told to sum in the
    # pool's own dtype; otherwise in an fp32 accumulator copied out at the end.
    pool_dtype = sources[0][0].dtype if sources else out.dtype
    direct = out.dtype in (torch.float32, torch.float64) or (not accumulate_fp32 and out.dtype == pool_dtype)
    coeffs = [c for _, c in sources]
    # The fused kernel sums in fp32: not for half outputs told to sum in their own dtype.
    if (out.dtype == torch.float32 or not direct) and fused.combine(out, [x for x, _ in sources], coeffs):
        return
    for o, xs in _chunks(out, [x for x, _ in sources]):
        _combine(o, xs, coeffs, scratch, direct)


def _combine(o: torch.Tensor, xs: list[torch.Tensor], coeffs: list[float], scratch: Scratch, direct: bool) -> None:
    device = o.device
    acc = o if direct else scratch.get("acc", o.numel(), torch.float32, device).view(o.shape)
    convert = None
    for k, (x, c) in enumerate(zip(xs, coeffs)):
        if x.device != device:
            x = _stage(x, device, scratch)
        if k == 0:
            acc.copy_(x)  # copy_ converts dtypes without a temporary
            if c != 1.0:
                acc.mul_(c)
            continue
        if x.dtype != acc.dtype and device.type == "cpu":
            # torch's CPU kernels would allocate a converted copy of x for a mixed-dtype
            # add_ (CUDA casts inside the kernel); convert into a reused buffer instead.
            if convert is None:
                convert = scratch.get("convert", o.numel(), acc.dtype, device).view(o.shape)
            x = convert.copy_(x)
        acc.add_(x, alpha=c)
    if not xs:
        acc.zero_()
    if acc is not o:
        o.copy_(acc)


def _chunks(out: torch.Tensor, sources: list[torch.Tensor]):
    """(out piece, source pieces) covering `out`. Most tensors fit one chunk and are
    used whole (no slicing: Python overhead is per op); a non-contiguous output too."""
    step = CPU_CHUNK_ELEMENTS if out.device.type == "cpu" else DEVICE_CHUNK_ELEMENTS
    n = out.numel()
    if n <= step or not out.is_contiguous():
        yield out, sources
        return
    flat, flats = out.view(-1), [x.view(-1) for x in sources]
    for start in range(0, n, step):
        yield flat[start : start + step], [x[start : start + step] for x in flats]


def _stage(x: torch.Tensor, device: torch.device, scratch: Scratch) -> torch.Tensor:
    # Pool and outputs on different devices: copy through a reused buffer there
    # (a pool moved with to_device avoids this copy altogether).
    return scratch.get("stage", x.numel(), x.dtype, device).view(x.shape).copy_(x)


def _copy_chunks(out: torch.Tensor, x: torch.Tensor, scratch: Scratch) -> None:
    for o, (xs,) in _chunks(out, [x]):
        o.copy_(_stage(xs, o.device, scratch) if xs.device != o.device else xs)


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
