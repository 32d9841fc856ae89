"""One-pass linear combination of tensors on the CPU, compiled by torch.compile.

Eager torch sums a bf16 pool in fp32 one pass per checkpoint, plus a bf16 -> fp32
conversion pass each: 0.3-0.5x memcpy bandwidth. The compiled kernel reads every
source once, accumulates in fp32 registers and writes the output once: over a flat
segment (merger.segments) 0.92-0.94x memcpy on one thread, 1.05-1.09x on two
(bench/merge.py, AVX2 AMD EPYC), within one bf16 ulp of the eager fp32 sum. Large
fp32 merges take it too (see FP32_MIN_ELEMENTS).

One kernel per number of sources (shapes are dynamic: every tensor of a model shares
it), compiled on first use (~30 s cold, ~6 s once inductor's on-disk cache has it).
Where compiling fails (no C++ compiler, say) `combine` returns False for good and
the caller takes the eager path.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager, nullcontext
from typing import Sequence

import torch

log = logging.getLogger(__name__)

# A kernel's arguments grow with its sources; bigger merges take the eager path.
MAX_SOURCES = 16
HALF_DTYPES = (torch.bfloat16, torch.float16)
# fp32 outputs: eager torch already reaches ~0.6x memcpy (a pass per checkpoint over a
# cache-sized accumulator), the kernel ~1.0x (one read of each source, one write),
# so it pays for its compile (~6 s, ~140 MB per process) only on merges this large.
FP32_MIN_ELEMENTS = 1 << 24

_kernels: dict[int, object] = {}
# (sources, their dtypes, the output's dtype) a kernel has run for: later calls do not trace.
_traced: set[tuple] = set()
_unavailable: str | None = None
# Dynamo compiles are not thread safe, and the embedded runtime merges from several threads;
# a merge is ~1% of a trial, so serializing merges costs nothing measurable.
_lock = threading.Lock()


class _TracingGate:
    """Model forwards (shared, any number at once) against a kernel's first call (exclusive).

    While dynamo traces a kernel, `torch.compiler.is_compiling()` is true in every thread, and
    transformers' hub-kernel layers (the `kernels` package, on SmolLM2's attention) then keep
    their per-forward state in a global instead of a context variable: a forward running in
    another thread failed ("TypeError: expected an instance of Token"), seen as 4 failed trials
    of 128 on the SmolLM2 pool, each the first merge of a new number of checkpoints.
    """

    def __init__(self):
        self._changed = threading.Condition()
        self._forwards = 0
        self._tracing = False
        self._waiting = 0  # tracers waiting: new forwards let them go first

    @contextmanager
    def forward(self):
        with self._changed:
            self._changed.wait_for(lambda: not self._tracing and not self._waiting)
            self._forwards += 1
        try:
            yield
        finally:
            with self._changed:
                self._forwards -= 1
                self._changed.notify_all()

    @contextmanager
    def tracing(self):
        with self._changed:
            self._waiting += 1
            self._changed.wait_for(lambda: not self._tracing and not self._forwards)
            self._waiting -= 1
            self._tracing = True
        try:
            yield
        finally:
            with self._changed:
                self._tracing = False
                self._changed.notify_all()


_gate = _TracingGate()
# Model forwards run inside this (evaluator.Evaluator does), so no kernel is traced meanwhile.
# Not re-entrant with a merge: a merge inside it that traces would wait for itself.
forward_pass = _gate.forward


def _kernel(n: int):
    """The compiled kernel for n sources. Its Python function is generated per n: dynamo keeps
    a few compiled variants per code object, and n kernels sharing one code object would
    exhaust that limit (each n is a variant) and fail."""
    sources = ", ".join(f"x{i}" for i in range(n))
    terms = " + ".join(f"c[{i}] * x{i}.float()" for i in range(n))
    source = f"def linear_combination_{n}(out, c, {sources}):\n    out.copy_(({terms}).to(out.dtype))\n"
    namespace: dict = {}
    exec(compile(source, f"<merger.fused: {n} sources>", "exec"), namespace)  # noqa: S102 - our own code
    return torch.compile(namespace[f"linear_combination_{n}"], dynamic=True, fullgraph=True)


_local = threading.local()


@contextmanager
def eager_only():
    """Merges in this thread skip the fused kernel: for one-shot merges (an export), where
    compiling would take longer than the merge it speeds up."""
    before = getattr(_local, "eager", False)
    _local.eager = True
    try:
        yield
    finally:
        _local.eager = before


def applies(out: torch.Tensor, sources: Sequence[torch.Tensor]) -> bool:
    # Half outputs from half sources; fp32 outputs (from half or fp32 sources) when large.
    if out.dtype in HALF_DTYPES:
        source_dtypes = HALF_DTYPES
    elif out.dtype == torch.float32 and out.numel() >= FP32_MIN_ELEMENTS:
        source_dtypes = (*HALF_DTYPES, torch.float32)
    else:
        return False
    return (
        _unavailable is None
        and not getattr(_local, "eager", False)
        and out.device.type == "cpu"
        and 2 <= len(sources) <= MAX_SOURCES  # one source is a plain copy
        and out.is_contiguous()
        and all(x.device.type == "cpu" and x.is_contiguous() and x.dtype in source_dtypes for x in sources)
    )


def combine(out: torch.Tensor, sources: Sequence[torch.Tensor], coefficients: Sequence[float]) -> bool:
    """out = sum of c * x, summed in fp32 and rounded once; False when the fused kernel cannot run."""
    global _unavailable
    if not applies(out, sources):
        return False
    signature = (len(sources), tuple(x.dtype for x in sources), out.dtype)
    with (_gate.tracing() if signature not in _traced else nullcontext()), _lock:
        try:
            kernel = _kernels.get(len(sources)) or _kernels.setdefault(len(sources), _kernel(len(sources)))
            kernel(out.view(-1), torch.tensor(coefficients, dtype=torch.float32), *(x.view(-1) for x in sources))
            _traced.add(signature)
        except Exception as error:  # noqa: BLE001 - any compile failure means: use the eager path
            _unavailable = f"{type(error).__name__}: {error}"[:500]
            log.warning("fused merge kernel unavailable, merging with eager torch (slower): %s", _unavailable)
            return False
    return True
