"""Our safetensors header parser, mmap views and streaming writer against the reference library."""

from __future__ import annotations

import io
import json
import struct

import pytest
import torch
from safetensors.torch import load, load_file

from merger.safetensors_mmap import HeaderError, MappedFile, read_header, write_file
from merger_fixtures import save_raw

ALL_DTYPES = {
    "f32": torch.randn(3, 5),
    "f16": torch.randn(7).half(),
    "bf16": torch.randn(2, 3, 3).bfloat16(),
    "f64": torch.randn(2).double(),
    "i64": torch.arange(6, dtype=torch.int64).view(2, 3),
    "i32": torch.arange(5, dtype=torch.int32),
    "u8": torch.arange(9, dtype=torch.uint8),
    "bool": torch.tensor([True, False, True]),
    "scalar": torch.tensor(3.5),
    "empty": torch.zeros(0, 4),
}


def mapped_ranges(path) -> list[tuple[int, int]]:
    """Address ranges where this process maps `path` (from /proc/self/maps)."""
    ranges = []
    for line in open("/proc/self/maps"):
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].strip() == str(path):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((start, end))
    return ranges


def test_views_match_reference_loader(tmp_path):
    path = save_raw(tmp_path / "all.safetensors", ALL_DTYPES)
    infos, _ = read_header(path)
    mapped = MappedFile(path)
    expected = load_file(str(path))
    assert set(infos) == set(expected)
    for name, info in infos.items():
        view = mapped.tensor(info)
        assert view.dtype == expected[name].dtype and view.shape == expected[name].shape, name
        assert torch.equal(view, expected[name]), name
    mapped.close()


def test_views_are_zero_copy_on_the_mapping(tmp_path):
    path = save_raw(tmp_path / "big.safetensors", {"x": torch.randn(256, 256), "y": torch.randn(100)})
    infos, _ = read_header(path)
    mapped = MappedFile(path)
    x = mapped.tensor(infos["x"])
    ranges = mapped_ranges(path.resolve())
    assert ranges, "file is not mapped"
    ptr = x.data_ptr()
    assert any(start <= ptr and ptr + x.nbytes <= end for start, end in ranges)
    assert x.untyped_storage().nbytes() == x.nbytes  # a view on the file, not a copy of it
    # Views outlive close(): the mapping stays until the last view goes.
    mapped.close()
    assert torch.equal(x, load_file(str(path))["x"])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda raw: raw[:5], "truncated"),
        (lambda raw: struct.pack("<Q", 10**9) + raw[8:], "does not fit"),
        (lambda raw: raw[:8] + b"{not json" + raw[17:], "not valid JSON"),
        (lambda raw: raw[:-4], "run past"),
    ],
    ids=["short", "huge-header", "bad-json", "truncated-data"],
)
def test_corrupt_headers_are_refused(tmp_path, mutate, message):
    good = save_raw(tmp_path / "good.safetensors", {"a": torch.randn(10), "b": torch.randn(3)})
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(mutate(good.read_bytes()))
    with pytest.raises(HeaderError, match=message):
        read_header(bad)


def test_inconsistent_entry_is_refused(tmp_path):
    header = json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    path = tmp_path / "inconsistent.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    with pytest.raises(HeaderError, match="'a'.*needs 16"):
        read_header(path)


def test_unsupported_dtype_is_refused(tmp_path):
    header = json.dumps({"a": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}).encode()
    path = tmp_path / "f8.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    with pytest.raises(HeaderError, match="unsupported dtype 'F8_E4M3'"):
        read_header(path)


def test_writer_round_trips_through_reference_loader():
    tensors = dict(ALL_DTYPES)
    buf = io.BytesIO()
    write_file(buf, [(n, t.dtype, tuple(t.shape)) for n, t in tensors.items()], lambda n, d, s: tensors[n], {"k": "v"})
    raw = buf.getvalue()
    loaded = load(raw)
    for name, t in tensors.items():
        assert torch.equal(loaded[name], t), name
    (length,) = struct.unpack("<Q", raw[:8])
    assert (8 + length) % 8 == 0
    header = json.loads(raw[8 : 8 + length])
    assert header["__metadata__"] == {"k": "v"}
    # Widest dtypes first: every tensor starts aligned to its element size.
    for name, entry in header.items():
        if name != "__metadata__":
            assert entry["data_offsets"][0] % tensors[name].element_size() == 0, name
