"""Write a large file around the page cache (O_DIRECT), where the filesystem allows it.

A buffered write of a merged model pays the kernel's page-cache bookkeeping per page:
on this project's ext4 VM disk, `dd` of 2 GiB took 3.2 s of system time buffered
(431 MB/s) and 0.37 s with O_DIRECT (1.1 GB/s). O_DIRECT wants block-aligned memory,
sizes and offsets, so bytes are gathered in an aligned staging buffer and written a
whole buffer at a time; the last block is padded, then the file truncated to its size.
Where O_DIRECT is refused (tmpfs, some network filesystems) this is a plain file.
"""

from __future__ import annotations

import mmap
import os
import warnings
from pathlib import Path

import torch

BLOCK = 4096
# 64 MB per write call: large enough that the syscall cost vanishes, small next to a model.
STAGE_BYTES = 64 << 20


def _as_tensor(data) -> torch.Tensor:
    raw = memoryview(data).cast("B")
    if not len(raw):
        return torch.empty(0, dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given buffer is not writable")  # only read here
        return torch.frombuffer(raw, dtype=torch.uint8)


class DirectFile:
    """A write-only binary file: `write(bytes-like)` and `close()` (also a context manager)."""

    def __init__(self, path: str | Path):
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        self.direct = hasattr(os, "O_DIRECT")
        try:
            self.fd = os.open(path, flags | (os.O_DIRECT if self.direct else 0), 0o644)
        except OSError:
            self.direct = False
            self.fd = os.open(path, flags, 0o644)
        self._stage_map = mmap.mmap(-1, STAGE_BYTES)  # anonymous: page-aligned
        self._stage = torch.frombuffer(self._stage_map, dtype=torch.uint8)
        self._filled = 0
        self._size = 0

    def write(self, data) -> int:
        """Append bytes (bytes, memoryview, numpy array or uint8 tensor); copied through torch,
        which releases the GIL, so merge threads keep running meanwhile."""
        source = data.reshape(-1) if isinstance(data, torch.Tensor) else _as_tensor(data)
        done, total = 0, source.numel()
        while done < total:
            n = min(total - done, STAGE_BYTES - self._filled)
            self._stage[self._filled : self._filled + n].copy_(source[done : done + n])
            self._filled += n
            done += n
            if self._filled == STAGE_BYTES:
                self._flush(STAGE_BYTES)
        return total

    def _flush(self, nbytes: int) -> None:
        view = memoryview(self._stage_map)[:nbytes]
        written = 0
        while written < nbytes:
            written += os.write(self.fd, view[written:])
        self._size += self._filled
        self._filled = 0

    def close(self) -> None:
        if self.fd < 0:
            return
        try:
            if self._filled:
                tail = self._filled
                padded = -(-tail // BLOCK) * BLOCK if self.direct else tail
                self._stage[tail:padded].zero_()
                self._flush(padded)
                os.ftruncate(self.fd, self._size)  # drop the padding
        finally:
            os.close(self.fd)
            self.fd = -1
            del self._stage  # the view pins the mapping
            try:
                self._stage_map.close()
            except BufferError:
                pass  # unmapped when the last view goes

    def __enter__(self) -> "DirectFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
