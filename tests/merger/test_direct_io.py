"""merger.direct_io: what goes in comes out, byte for byte, whatever the sizes and the filesystem."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from merger import direct_io
from merger.direct_io import DirectFile


@pytest.mark.parametrize("stage", [direct_io.STAGE_BYTES, 8192])
def test_bytes_round_trip_with_unaligned_pieces(tmp_path, monkeypatch, stage):
    monkeypatch.setattr(direct_io, "STAGE_BYTES", stage)  # 8 KB: many flushes, pieces spanning them
    g = torch.Generator().manual_seed(0)
    pieces = [b"header!", torch.randint(0, 256, (12345,), dtype=torch.uint8, generator=g),
              np.arange(1001, dtype=np.float32), b"", torch.randint(0, 256, (3,), dtype=torch.uint8, generator=g)]
    with DirectFile(tmp_path / "out.bin") as f:
        for piece in pieces:
            f.write(piece)
    expected = b"".join(p.numpy().tobytes() if isinstance(p, torch.Tensor) else bytes(memoryview(p).cast("B")) for p in pieces)
    assert (tmp_path / "out.bin").read_bytes() == expected  # the padded last block is truncated away


def test_tmpfs_works_whether_or_not_it_takes_o_direct(tmp_path):
    target = Path("/dev/shm") if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else tmp_path
    path = target / f"recycle-direct-io-{os.getpid()}.bin"
    try:
        with DirectFile(path) as f:
            f.write(b"x" * 5000)
        assert path.read_bytes() == b"x" * 5000
    finally:
        path.unlink(missing_ok=True)
