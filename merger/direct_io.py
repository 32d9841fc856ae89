"""Write a large file around the page cache (O_DIRECT), where the filesystem allows it.

A buffered write of a merged model pays the kernel's page-cache bookkeeping per page:
on this project's ext4 VM disk, `dd` of 2 GiB took 3.2 s of system time buffered
(431 MB/s) and 0.37 s with O_DIRECT (1.1 GB/s). O_DIRECT wants block-aligned memory,
sizes and offsets, so bytes are gathered in aligned staging buffers and written a whole
buffer at a time; the last block is padded, then the file truncated to its size.
Where O_DIRECT is refused (tmpfs, some network filesystems) this is a plain file.
"""

from __future__ import annotations

import mmap
import os
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

BLOCK = 4096
# 64 MB per write call: large enough that the syscall cost vanishes, small next to a model.
STAGE_BYTES = 64 << 20
WRITERS = 2  # writes in flight
STAGES = WRITERS + 1  # one more fills meanwhile


def _as_tensor(data) -> torch.Tensor:
    raw = memoryview(data).cast("B")
    if not len(raw):
        return torch.empty(0, dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given buffer is not writable")  # only read here
        return torch.frombuffer(raw, dtype=torch.uint8)


class DirectFile:
    """A write-only binary file: `write(bytes-like)` and `close()` (also a context manager).

    Full stages are written by background threads at their offsets (pwrite), two at a time,
    while the next stage fills: two O_DIRECT writers moved 2 GiB in 1.6 s against 2.1 s
    for one (`dd`, same disk)."""

    def __init__(self, path: str | Path):
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        self.direct = hasattr(os, "O_DIRECT")
        try:
            self.fd = os.open(path, flags | (os.O_DIRECT if self.direct else 0), 0o644)
        except OSError:
            self.direct = False
            self.fd = os.open(path, flags, 0o644)
        # Anonymous mappings are page-aligned, as O_DIRECT wants.
        self._maps = [mmap.mmap(-1, STAGE_BYTES) for _ in range(STAGES)]
        self._stages = [torch.frombuffer(m, dtype=torch.uint8) for m in self._maps]
        self._pending: list[Future | None] = [None] * STAGES
        self._writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="direct-io")
        self._current = 0
        self._filled = 0
        self._offset = 0  # where the current stage starts in the file

    def write(self, data) -> int:
        """Append bytes (bytes, memoryview, numpy array or uint8 tensor); copied through torch,
        which releases the GIL, so merge threads keep running meanwhile."""
        source = data.reshape(-1) if isinstance(data, torch.Tensor) else _as_tensor(data)
        done, total = 0, source.numel()
        while done < total:
            n = min(total - done, STAGE_BYTES - self._filled)
            self._stages[self._current][self._filled : self._filled + n].copy_(source[done : done + n])
            self._filled += n
            done += n
            if self._filled == STAGE_BYTES:
                self._submit(STAGE_BYTES)
        return total

    def _submit(self, nbytes: int) -> None:
        """Write the current stage's first nbytes at its offset in the background; move to the next stage."""
        self._pending[self._current] = self._writers.submit(self._pwrite, self._current, nbytes, self._offset)
        self._offset += self._filled
        self._current = (self._current + 1) % STAGES
        self._filled = 0
        waiting = self._pending[self._current]
        if waiting is not None:  # that stage's last write must be done before it is refilled
            waiting.result()
            self._pending[self._current] = None

    def _pwrite(self, stage: int, nbytes: int, offset: int) -> None:
        view = memoryview(self._maps[stage])[:nbytes]
        written = 0
        while written < nbytes:
            written += os.pwrite(self.fd, view[written:], offset + written)

    def close(self) -> None:
        if self.fd < 0:
            return
        try:
            size = self._offset + self._filled
            if self._filled:
                tail = self._filled
                padded = -(-tail // BLOCK) * BLOCK if self.direct else tail
                self._stages[self._current][tail:padded].zero_()
                self._submit(padded)
            self._writers.shutdown(wait=True)
            for pending in self._pending:
                if pending is not None:
                    pending.result()  # raise a failed write
            os.ftruncate(self.fd, size)  # drop the padding
        finally:
            self._writers.shutdown(wait=True)
            os.close(self.fd)
            self.fd = -1
            del self._stages  # the views pin the mappings
            for m in self._maps:
                try:
                    m.close()
                except BufferError:
                    pass  # unmapped when the last view goes

    def __enter__(self) -> "DirectFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
