"""Segments: runs of tensors stored back to back in every checkpoint, merged as one flat tensor."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from contracts.models import MergeSpec
from merger import CheckpointPool, allocate_outputs, make_method
from merger.segments import flat_view
from merger_fixtures import spec_of


def separate_outputs(pool: CheckpointPool, dtype=None) -> dict[str, torch.Tensor]:
    """One allocation per tensor: what a merge must handle tensor by tensor."""
    return {n: torch.empty(pool.shape(n), dtype=dtype if dtype and pool.dtype(n).is_floating_point else pool.dtype(n))
            for n in pool.tensor_names}


def floating(pool: CheckpointPool) -> set[str]:
    return {n for n in pool.tensor_names if pool.dtype(n).is_floating_point}


@pytest.mark.parametrize("fixture", ["gpt2_dirs", "gpt2_bf16_dirs", "gpt2_sharded_dirs"])
def test_saved_checkpoints_are_segments_and_merge_flat_exactly_as_tensor_by_tensor(fixture, request):
    dirs = request.getfixturevalue(fixture)
    with CheckpointPool.open(spec_of(dirs)) as pool:
        covered = [name for segment in pool.segments for name in segment.names]
        assert len(covered) == len(set(covered))
        if fixture != "gpt2_sharded_dirs":  # one file per checkpoint: one run holds everything
            assert set(covered) == floating(pool)
        else:  # 20 KB shards: runs end where the files do
            assert len(pool.segments) > 1
        method = make_method(pool, MergeSpec())
        weights = [0.5, 0.3, 0.2, 0.0][: len(pool)]
        flat, separate = allocate_outputs(pool), separate_outputs(pool)
        assert all(flat_view(flat, segment) is not None for segment in pool.segments)
        assert all(flat_view(separate, segment) is None for segment in pool.segments if len(segment.names) > 1)
        method.merge_into(weights, flat)
        method.merge_into(weights, separate)
        for name in pool.tensor_names:
            assert torch.equal(flat[name], separate[name]), name


def test_segments_stop_at_integer_tensors_and_other_dtypes(raw_files):
    with CheckpointPool.open(spec_of(raw_files)) as pool:
        for segment in pool.segments:
            assert all(pool.dtype(n) == segment.dtype and segment.dtype.is_floating_point for n in segment.names)
        out = allocate_outputs(pool)
        make_method(pool, MergeSpec()).merge_into([0.25] * 4, out)
        assert torch.equal(out["steps"], pool.tensor(0, "steps"))
        expected = sum(0.25 * pool.tensor(i, "w") for i in range(4))
        torch.testing.assert_close(out["w"], expected)


def write_in_order(path, tensors: dict[str, torch.Tensor], order: list[str]) -> None:
    """A valid safetensors file whose data holds the tensors in `order` (writers sort by name)."""
    header, offset = {}, 0
    for name in order:
        nbytes = tensors[name].numel() * tensors[name].element_size()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name in order:
            f.write(tensors[name].contiguous().view(torch.uint8).numpy().tobytes())


def test_checkpoints_laid_out_differently_merge_tensor_by_tensor(tmp_path):
    tensors = [{"a": torch.randn(5, 3), "b": torch.randn(7), "c": torch.randn(2, 2)} for _ in range(2)]
    write_in_order(tmp_path / "x.safetensors", tensors[0], ["a", "b", "c"])
    write_in_order(tmp_path / "y.safetensors", tensors[1], ["a", "c", "b"])  # b and c swapped
    with CheckpointPool.open(spec_of([tmp_path / "x.safetensors", tmp_path / "y.safetensors"])) as pool:
        # a,b is a run in x only, b,c in neither; a then c is a run in y only.
        assert pool.segments == []
        out = allocate_outputs(pool)
        make_method(pool, MergeSpec()).merge_into([0.5, 0.5], out)
        for name in "abc":
            torch.testing.assert_close(out[name], 0.5 * tensors[0][name] + 0.5 * tensors[1][name])


def test_a_segment_view_is_the_files_bytes_not_a_copy(gpt2_dirs):
    with CheckpointPool.open(spec_of(gpt2_dirs)) as pool:
        [segment] = pool.segments
        flat = pool.segment(1, 0)
        for name, offset in zip(segment.names, segment.offsets):
            tensor = pool.tensor(1, name)
            assert tensor.data_ptr() == flat.data_ptr() + offset * flat.element_size()
