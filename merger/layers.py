"""Which layer a tensor belongs to, and layer groups: K contiguous blocks of layers.

Shared by the mergekit config reader (merger.mergekit_config: slices and gradients) and
per-layer-group merges (MergeMethod with MergeSpec.weights per layer_groups), so a grouped
merge and the mergekit `slices` config its export writes put every tensor in the same group.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping, Sequence

from merger.segments import Segment

# The numbered block of a tensor name: model.layers.N. (Llama, Qwen, Mistral...), transformer.h.N. (GPT-2).
LAYER = re.compile(r"(?:^|\.)(?:layers|h|layer|blocks)\.(\d+)\.")
EMBEDDING = re.compile(r"embed|wte|wpe")
LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers")


def layer_count(config_dir: Path | None, tensor_names: Sequence[str]) -> int:
    """The model's number of layers: config.json's, else one more than the highest layer index."""
    if config_dir is not None:
        try:
            model_config = json.loads((Path(config_dir) / "config.json").read_text())
        except (OSError, ValueError):
            model_config = {}
        for key in LAYER_COUNT_KEYS:
            if isinstance(model_config.get(key), int):
                return model_config[key]
    indices = [int(m.group(1)) for name in tensor_names if (m := LAYER.search(name))]
    return max(indices, default=-1) + 1


def layer_of(name: str) -> int | None:
    match = LAYER.search(name)
    return int(match.group(1)) if match else None


def group_ranges(layers: int, groups: int) -> list[tuple[int, int]]:
    """[start, end) of each of `groups` contiguous blocks covering `layers` layers, sizes
    differing by at most one (the first layers % groups blocks one longer)."""
    if not 1 <= groups <= layers:
        raise ValueError(f"cannot split {layers} layer(s) into {groups} groups (1 to {layers})")
    size, extra = divmod(layers, groups)
    ranges, start = [], 0
    for g in range(groups):
        end = start + size + (g < extra)
        ranges.append((start, end))
        start = end
    return ranges


def tensor_groups(tensor_names: Sequence[str], layers: int, groups: int) -> dict[str, int]:
    """Group of each tensor: its layer's block; outside the layers, embeddings in group 0 and
    the rest (final norm, lm_head) in the last group, as mergekit gives them the first and the
    last slice."""
    ranges = group_ranges(layers, groups)
    by_layer = {layer: g for g, (start, end) in enumerate(ranges) for layer in range(start, end)}
    out = {}
    for name in tensor_names:
        layer = layer_of(name)
        if layer is None:
            out[name] = 0 if EMBEDDING.search(name) else groups - 1
        elif layer not in by_layer:
            raise ValueError(f"tensor {name!r} is in layer {layer}, but the model has {layers} layers")
        else:
            out[name] = by_layer[layer]
    return out


def group_runs(segment: Segment, group_of: Mapping[str, int]) -> list[tuple[int, int, int, tuple[str, ...]]]:
    """(group, first element, end element, names) of each run of a segment's tensors in one group
    (a segment lists its tensors in file order: layers 1, 10, 11, 2... alternate groups). A tensor
    missing from `group_of` is in group 0 (one group: the whole segment is one run)."""
    runs: list[tuple[int, int, int, tuple[str, ...]]] = []
    ends = segment.offsets[1:] + (segment.numel,)
    for name, first, end in zip(segment.names, segment.offsets, ends):
        group = group_of.get(name, 0)
        if runs and runs[-1][0] == group:
            runs[-1] = (group, runs[-1][1], end, runs[-1][3] + (name,))
        else:
            runs.append((group, first, end, (name,)))
    return runs
