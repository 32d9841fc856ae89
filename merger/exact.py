"""Per-tensor merge kernels that compute exactly what mergekit 0.1.5 computes.

mergekit merges one tensor at a time: it casts every input to the config's `dtype`
(the compute dtype; the stored dtype when unset), then

- linear: sums w_i * x_i in an fp32 accumulator (`addcmul_`, inputs in order),
  divides by sum(w) when normalize, and rounds to the compute dtype;
- generalized task arithmetic (task_arithmetic, ties, dare_linear, dare_ties), all in
  the compute dtype: deltas d_i = x_i - base, each optionally sparsified over the
  whole tensor (ties: keep the top density share of |d_i|, ties at the boundary
  broken as torch.argsort breaks them; dare: keep each element with probability
  density), optionally rescaled to the delta's L1 norm, multiplied by w_i, summed
  over inputs (ties: only the deltas agreeing with the sign of their sum),
  divided by the summed weights when normalize, times lambda, added to base;

and the writer rounds to `out_dtype`. We run the same torch operations in the same
order, on runs of at most CHUNK_ELEMENTS elements of the flattened tensor and in
reused scratch buffers instead of an N-input stack of the whole tensor: elementwise
operations do not care, and a sum over inputs of a (N, chunk) block gives the same
bits as over (N, *shape) (checked against mergekit in tests/merger/test_mergekit_equality.py).
Only the sparsification masks (one byte per element and input) span a whole tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from merger.errors import MethodError

# Elements per run of the task-vector kernel: tensors up to this size are processed whole
# (exactly mergekit's reduction shape); larger ones (embeddings) in runs. 4M fp32 elements
# x 4 inputs keep the delta block at 64 MB.
CHUNK_ELEMENTS = 1 << 22
# Linear is elementwise, so its runs can be as small as the cache wants: 256K fp32 elements
# (1 MB accumulator + 1 MB widened input). bench/merge.py --race's configs, in process on the
# busy 2-core EPYC: 4 x 1.1B bf16 5.9-6.6 s vs 7.6 s with 64K and 6.4-6.7 s with 1M; 4 x
# SmolLM2-135M 0.9-1.3 s vs 1.2-1.3 s with 64K and 3.2 s with 4M.
LINEAR_CHUNK_ELEMENTS = 1 << 18
# mergekit's thresholds (sparsify.rescaled_masked_tensor, generalized_task_arithmetic).
RESCALE_EPS = 1e-7
DIVISOR_EPS = 1e-8


class Scratch:
    """Grow-only scratch buffers keyed by role and dtype (CPU or the inputs' device)."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}

    def get(self, role: str, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (role, dtype, device)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < numel:
            buf = self._buffers[key] = torch.empty(numel, dtype=dtype, device=device)
        return buf[:numel]


def _as(x: torch.Tensor, dtype: torch.dtype, role: str, buffers: Scratch, device: torch.device | None = None) -> torch.Tensor:
    """x in `dtype` on `device` (x itself when it already is; else a rounded copy in a reused
    buffer: also how a pool on the GPU reaches outputs on the CPU, and back)."""
    device = device or x.device
    if x.dtype == dtype and x.device == device:
        return x
    return buffers.get(role, x.numel(), dtype, device).view(x.shape).copy_(x)


def _runs(n: int, step: int | None = None):
    step = step or CHUNK_ELEMENTS
    for start in range(0, n, step):
        yield start, min(n, start + step)


def copy_buffer(out: torch.Tensor, xs: Sequence[torch.Tensor], name: str) -> None:
    """Integer and bool tensors are not merged: all inputs must agree (mergekit's rule)."""
    first = xs[0]
    if any(x.dtype != first.dtype or not torch.equal(x, first) for x in xs[1:]):
        raise MethodError(f"non-floating tensor {name!r} differs between inputs; mergekit refuses to merge it too")
    out.copy_(first)


def linear(out: torch.Tensor, xs: Sequence[torch.Tensor], weights: Sequence[float], normalize: bool,
           compute: torch.dtype, buffers: Scratch) -> None:
    """mergekit's linear: sum_i w_i x_i in fp32 (fp64 for fp64 inputs), / sum_i w_i when normalize."""
    acc_dtype = torch.float64 if compute == torch.float64 else torch.float32
    denominator = torch.tensor([list(weights)], dtype=acc_dtype).sum(dim=1).to(out.device) if normalize else None
    # Zero weights add +-0 to a sum that starts at +0: skipping them changes no bit.
    terms = [(x.reshape(-1), w) for x, w in zip(xs, weights) if w != 0.0]
    flat = out.view(-1)
    for start, end in _runs(flat.numel(), LINEAR_CHUNK_ELEMENTS):
        m = end - start
        acc = buffers.get("acc", m, acc_dtype, out.device).zero_()
        for x, w in terms:
            piece = _as(x[start:end], compute, "gather", buffers, out.device)  # mergekit's cast to `dtype`
            # Widened inside the kernel (type promotion): the same bits as addcmul_ with an fp32
            # coefficient, one pass fewer than widening into a buffer first.
            acc.add_(piece, alpha=w)
        if denominator is not None:
            acc.div_(denominator)
        _store(flat[start:end], acc, compute, buffers)


def _store(out: torch.Tensor, result: torch.Tensor, compute: torch.dtype, buffers: Scratch) -> None:
    """Round to the compute dtype (mergekit's `.to(first.dtype)`), then to the output's."""
    if result.dtype != compute and out.dtype != compute:
        result = _as(result, compute, "round", buffers)
    out.copy_(result)


@dataclass(frozen=True)
class TaskVectorKind:
    """Which generalized-task-arithmetic variant: mergekit registers each as one of these."""

    sparsify: str | None  # None, "magnitude" (ties) or "random" (dare)
    consensus: bool  # ties' sign election


TASK_ARITHMETIC = TaskVectorKind(None, False)
TIES = TaskVectorKind("magnitude", True)
DARE_LINEAR = TaskVectorKind("random", False)
DARE_TIES = TaskVectorKind("random", True)


def task_vectors(out: torch.Tensor, base: torch.Tensor, xs: Sequence[torch.Tensor], kind: TaskVectorKind,
                 weights: Sequence[float], densities: Sequence[float], normalize: bool, rescale: bool,
                 lam: float, int8_mask: bool, compute: torch.dtype, buffers: Scratch,
                 generator: torch.Generator | None = None) -> None:
    """mergekit's GeneralizedTaskArithmeticMerge.merge_group for one tensor, into `out`."""
    flat_out = out.view(-1)
    base_flat = base.reshape(-1)
    if not xs:  # only the base: mergekit returns it
        _store(flat_out, _as(base_flat, compute, "base", buffers, out.device), compute, buffers)
        return
    n = base_flat.numel()
    masks = [_sparsity_mask(base_flat, x.reshape(-1), kind.sparsify, d, rescale, compute, buffers, generator, out.device)
             for x, d in zip(xs, densities)]
    w = torch.tensor(list(weights), dtype=compute, device=out.device).view(-1, 1)
    mask_dtype = torch.int8 if int8_mask else compute
    for start, end in _runs(n):
        m = end - start
        b = _as(base_flat[start:end], compute, "base", buffers, out.device)
        deltas = buffers.get("deltas", len(xs) * m, compute, out.device).view(len(xs), m)
        for i, x in enumerate(xs):
            torch.sub(_as(x.reshape(-1)[start:end], compute, "gather", buffers, out.device), b, out=deltas[i])
            if masks[i] is not None:
                _apply_mask(deltas[i], masks[i], start, end, compute, buffers)
        deltas.mul_(w)
        if kind.consensus:
            sign = deltas.sign().to(mask_dtype)
            majority = (deltas.sum(dim=0) >= 0).to(mask_dtype) * 2 - 1
            agree = sign == majority
            mixed = (deltas * agree).sum(dim=0)
            divisor = (w * agree).sum(dim=0)
            divisor[divisor == 0] = 1
        else:
            mixed = deltas.sum(dim=0)
            divisor = w.sum(dim=0)
            divisor[divisor.abs() < DIVISOR_EPS] = 1
        if normalize:
            mixed /= divisor
        if lam != 1:
            mixed *= lam
        flat_out[start:end].copy_(b + mixed)


@dataclass
class _Mask:
    keep: torch.Tensor | None  # bool, whole tensor; None: everything dropped
    work: torch.dtype  # dtype the mask and the rescale are applied in
    scale: torch.Tensor | None  # 0-dim, in `work`


def _sparsity_mask(base: torch.Tensor, x: torch.Tensor, method: str | None, density: float, rescale: bool,
                   compute: torch.dtype, buffers: Scratch, generator: torch.Generator | None,
                   device: torch.device) -> _Mask | None:
    """What sparsification keeps of d = x - base (None: all of it, unscaled): mergekit's
    sparsify.magnitude / sparsify.bernoulli, on the whole tensor as mergekit does."""
    if method is None or density >= 1:
        return None
    n = base.numel()
    if method == "magnitude":
        work = compute
        if density <= 0 or n == 0:
            return _Mask(None, work, None)
    elif method == "random":
        work = compute if compute == torch.bfloat16 else torch.float32  # torch.bernoulli lacks CPU fp16
    else:
        raise MethodError(f"unknown sparsification {method!r}")
    delta = buffers.get("delta", n, compute, device)
    torch.sub(_as(x, compute, "gather", buffers, device), _as(base, compute, "base", buffers, device), out=delta)
    if method == "magnitude":
        k = max(1, int(density * n))
        magnitudes = delta.abs()
        if magnitudes.device.type == "cpu":
            magnitudes = magnitudes.float()
        keep = torch.zeros(n, dtype=torch.bool, device=device)
        keep[torch.argsort(magnitudes, descending=True)[:k]] = True
        del magnitudes
    else:
        probability = torch.full((n,), density, dtype=work, device=device)
        keep = torch.bernoulli(probability, generator=generator).bool()
        del probability
    scale = None
    if rescale:
        d = _as(delta, work, "work", buffers)
        masked = d * keep.to(work)
        before, after = d.abs().sum(), masked.abs().sum()
        if not (before < RESCALE_EPS or after < RESCALE_EPS):
            scale = before / after
        del masked
    return _Mask(keep, work, scale)


def _apply_mask(delta: torch.Tensor, mask: _Mask, start: int, end: int, compute: torch.dtype, buffers: Scratch) -> None:
    if mask.keep is None:
        delta.zero_()  # magnitude with density <= 0: mergekit's zeros_like
        return
    target = delta if mask.work == compute else _as(delta, mask.work, "work_chunk", buffers)
    keep = buffers.get("keep", end - start, mask.work, delta.device).copy_(mask.keep[start:end])
    target.mul_(keep)
    if mask.scale is not None:
        target.mul_(mask.scale)
    if target is not delta:
        delta.copy_(target)
