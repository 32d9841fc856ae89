"""Zero-copy reading (and streaming writing) of safetensors files.

The format: an 8-byte little-endian header length N, N bytes of JSON mapping each
tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to
the data that follows the header, plus an optional "__metadata__" of strings), then
the raw little-endian tensor data.

We parse the header ourselves and build torch views straight on a read-only mmap of
the file: `safe_open(...).get_tensor` copies every tensor, which measured 2x slower
merges and doubles the memory of a pool (NOTES.md). All processes mapping the same
file share one copy in the page cache.
"""

from __future__ import annotations

import json
import math
import mmap
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable

import torch

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}

# The reference implementation refuses headers above 100 MB; so do we, before reading one.
MAX_HEADER_BYTES = 100 * 1024 * 1024


class HeaderError(Exception):
    """A malformed or truncated file; the pool adds which checkpoint it belongs to."""


@dataclass(frozen=True)
class TensorInfo:
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse and check a file's header (reads only the header, never the data)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise HeaderError(f"only {size} bytes: truncated, or not a safetensors file")
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_HEADER_BYTES or 8 + length > size:
            raise HeaderError(
                f"header length {length} does not fit the file's {size} bytes: "
                "truncated, or not a safetensors file"
            )
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise HeaderError(f"header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise HeaderError("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data_start, data_len = 8 + length, size - 8 - length
    infos = {name: _parse_entry(name, entry, data_start, data_len) for name, entry in header.items()}
    return infos, metadata


def _parse_entry(name: str, entry: object, data_start: int, data_len: int) -> TensorInfo:
    if not isinstance(entry, dict):
        raise HeaderError(f"tensor {name!r}: header entry is not an object")
    dtype = DTYPES.get(entry.get("dtype"))  # type: ignore[arg-type]
    if dtype is None:
        raise HeaderError(
            f"tensor {name!r}: unsupported dtype {entry.get('dtype')!r} (supported: {', '.join(DTYPES)})"
        )
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise HeaderError(f"tensor {name!r}: bad shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
        raise HeaderError(f"tensor {name!r}: bad data_offsets {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_len:
        raise HeaderError(
            f"tensor {name!r}: data_offsets [{begin}, {end}] run past the {data_len} bytes of data: truncated file?"
        )
    expected = math.prod(shape) * dtype.itemsize
    if end - begin != expected:
        raise HeaderError(
            f"tensor {name!r}: holds {end - begin} bytes, but shape {shape} of {entry['dtype']} needs {expected}"
        )
    return TensorInfo(dtype, tuple(shape), data_start + begin, data_start + end)


class MappedFile:
    """One read-only mapping of a file; tensors are views on it.

    Each view holds a reference to our memoryview, which pins the mapping: the file
    stays mapped while any view lives, even after close(). Never write to a view:
    the pages are read-only and a write crashes the process.
    """

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as f:
            self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._view: memoryview | None = memoryview(self._mmap)

    def tensor(self, info: TensorInfo) -> torch.Tensor:
        if self._view is None:
            raise ValueError(f"{self.path} is closed")
        if info.numel == 0:  # frombuffer refuses empty counts
            return torch.empty(info.shape, dtype=info.dtype)
        with warnings.catch_warnings():
            # torch has no read-only tensors and says so; the views are never written.
            warnings.filterwarnings("ignore", message="The given buffer is not writable")
            flat = torch.frombuffer(self._view, dtype=info.dtype, count=info.numel, offset=info.start)
        return flat.view(info.shape)

    def close(self) -> None:
        self._view = None
        try:
            self._mmap.close()
        except BufferError:
            pass  # views still alive elsewhere keep it mapped; it unmaps when the last one goes


def file_order(entries: Iterable[tuple[str, torch.dtype, tuple[int, ...]]]) -> list:
    """The order write_file lays tensors out (and calls `fill` in): widest dtype first, then by name."""
    return sorted(entries, key=lambda e: (-e[1].itemsize, e[0]))


def write_file(
    f: BinaryIO,
    entries: Iterable[tuple[str, torch.dtype, tuple[int, ...]]],
    fill,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write a safetensors file one tensor at a time.

    `fill(name, dtype, shape)` returns the tensor's contiguous CPU data; only that one
    tensor needs to be in memory. Tensors are laid out widest dtype first so every
    tensor starts aligned to its element size, as mmap readers prefer.
    """
    entries = file_order(entries)
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape in entries:
        nbytes = math.prod(shape) * dtype.itemsize
        header[name] = {"dtype": DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(8 + len(raw)) % 8)  # pad so the data starts 8-byte aligned
    f.write(struct.pack("<Q", len(raw)) + raw)
    for name, dtype, shape in entries:
        tensor = fill(name, dtype, shape)
        if tensor.numel():
            f.write(tensor.reshape(-1).view(torch.uint8).numpy())
