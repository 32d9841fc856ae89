"""Runs of tensors that lie back to back, in the same order, in every checkpoint of a pool.

A model has hundreds of tensors (SmolLM2-135M: 272), and a merge kernel call costs
a fixed ~0.3 ms on the CPU (guards of the compiled kernel, op dispatch) on top of
its bytes: per tensor, a bf16 merge reached 0.41x memcpy bandwidth on an AVX2 CPU,
over one flat view of the same bytes 0.66x (one thread; 0.46x vs 0.88x with two).
safetensors writers lay tensors out back to back, so whole files usually are one
run. A segment is such a run of floating tensors of one dtype; merging a segment is
one linear combination of flat views, when the outputs are laid out the same way
(`allocate_outputs` and the evaluator's resident model do that).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from merger.safetensors_mmap import TensorInfo

# name -> (file, info): where each tensor of one checkpoint lives.
Layout = dict[str, tuple[Path, TensorInfo]]


@dataclass(frozen=True)
class Segment:
    names: tuple[str, ...]
    dtype: torch.dtype
    offsets: tuple[int, ...]  # element offset of each tensor within the segment
    numel: int


def find_segments(layouts: list[Layout]) -> list[Segment]:
    """Runs of 2+ floating tensors of one dtype, contiguous in one file, that every
    checkpoint stores in the same order without gaps."""
    first = layouts[0]
    by_place = sorted(first, key=lambda name: (str(first[name][0]), first[name][1].start))
    runs: list[list[str]] = []
    for name in by_place:
        path, info = first[name]
        if runs:
            prev_path, prev = first[runs[-1][-1]]
            if prev_path == path and prev.end == info.start and prev.dtype == info.dtype and info.dtype.is_floating_point:
                runs[-1].append(name)
                continue
        runs.append([name])
    segments = []
    for run in runs:
        if len(run) < 2 or not first[run[0]][1].dtype.is_floating_point:
            continue
        if not all(_contiguous(layout, run) for layout in layouts[1:]):
            continue
        offsets, total = [], 0
        for name in run:
            offsets.append(total)
            total += first[name][1].numel
        segments.append(Segment(tuple(run), first[run[0]][1].dtype, tuple(offsets), total))
    return segments


def _contiguous(layout: Layout, run: list[str]) -> bool:
    return all(
        layout[a][0] == layout[b][0] and layout[a][1].end == layout[b][1].start for a, b in zip(run, run[1:])
    )


def span(layout: Layout, segment: Segment) -> tuple[Path, TensorInfo]:
    """The file and byte range holding `segment` in one checkpoint, as one flat tensor."""
    path, start = layout[segment.names[0]]
    end = layout[segment.names[-1]][1].end
    return path, TensorInfo(segment.dtype, (segment.numel,), start.start, end)


def flat_view(out: Mapping[str, torch.Tensor], segment: Segment) -> torch.Tensor | None:
    """One 1-D tensor over `out`'s tensors of `segment`, if they lie back to back in one
    storage in the segment's order (else None: merge them one by one)."""
    first = out[segment.names[0]]
    item = first.element_size()
    base = first.data_ptr()
    for name, offset in zip(segment.names, segment.offsets):
        t = out[name]
        if not t.is_contiguous() or t.dtype != first.dtype or t.device != first.device or t.data_ptr() != base + offset * item:
            return None
        if t.untyped_storage().data_ptr() != first.untyped_storage().data_ptr():
            return None
    if (first.storage_offset() + segment.numel) * item > first.untyped_storage().nbytes():
        return None
    return first.as_strided((segment.numel,), (1,), first.storage_offset())


def segment_views(buffer: torch.Tensor, segment: Segment, shapes: Mapping[str, torch.Size]) -> dict[str, torch.Tensor]:
    """`segment`'s tensors as views of its flat `buffer` (1-D, `segment.numel` long)."""
    return {
        name: buffer[offset : offset + shapes[name].numel()].view(shapes[name])
        for name, offset in zip(segment.names, segment.offsets)
    }


def allocate_flat(
    segments: list[Segment], shapes: Mapping[str, torch.Size], dtype_of, device: torch.device
) -> dict[str, torch.Tensor]:
    """Per name, a view into one buffer per segment laid out like the segment.
    `dtype_of(segment)` is the buffer's dtype."""
    out = {}
    for segment in segments:
        out.update(segment_views(torch.empty(segment.numel, dtype=dtype_of(segment), device=device), segment, shapes))
    return out
