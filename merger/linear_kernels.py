"""Eager in-place linear combination of tensors, chunk by chunk (the search's hot path).

See merger/methods.py for the performance model; merger/fused.py for the compiled kernel
this falls back from.
"""

from __future__ import annotations

from typing import Sequence

import torch

from merger import fused

# Elements per chunk: on the CPU 1M fp32 elements (4 MB) keep the accumulator and the
# conversion buffer in L3; on an accelerator chunks only bound the scratch size.
CPU_CHUNK_ELEMENTS = 1 << 20
DEVICE_CHUNK_ELEMENTS = 1 << 26


def linear_combination(
    out: torch.Tensor,
    sources: Sequence[tuple[torch.Tensor, float]],
    scratch,
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


def _combine(o: torch.Tensor, xs: list[torch.Tensor], coeffs: list[float], scratch, direct: bool) -> None:
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


def _stage(x: torch.Tensor, device: torch.device, scratch) -> torch.Tensor:
    # Pool and outputs on different devices: copy through a reused buffer there
    # (a pool moved with to_device avoids this copy altogether).
    return scratch.get("stage", x.numel(), x.dtype, device).view(x.shape).copy_(x)


def _copy_chunks(out: torch.Tensor, x: torch.Tensor, scratch) -> None:
    for o, (xs,) in _chunks(out, [x]):
        o.copy_(_stage(xs, o.device, scratch) if xs.device != o.device else xs)
