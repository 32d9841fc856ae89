"""Which layer a tensor belongs to, and layer groups: K contiguous blocks of layers; which
module class (embeddings, attention, mlp, norms) a tensor belongs to.

Shared by the mergekit config reader (merger.mergekit_config: slices and gradients) and
per-layer-group merges (MergeMethod with MergeSpec.weights per layer_groups), so a grouped
merge and the mergekit `slices` config its export writes put every tensor in the same group.
Module classes (MergeSpec.weights per module_classes) are exported as `{filter, value}`
conditions (merger.export), checked against module_class tensor by tensor.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping, Sequence

from contracts.models import WeightLayout

from merger.errors import MethodError
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


# Module classes, tried in this order on the dot-separated parts of a tensor name. Norms come
# first: a norm inside a module (Qwen3's self_attn.q_norm, post_attention_layernorm) is still
# a norm, scale vectors all alike. A bias sits in its module's part, so it takes the module's
# class (h.0.attn.c_attn.bias: attention).
MODULE_CLASS_PARTS = {
    "norms": re.compile(r"norm|^ln(?:_\w+)?$", re.IGNORECASE),  # ln_1, ln_f, input_layernorm, model.norm
    "embeddings": re.compile(r"embed|^(?:wte|wpe|lm_head)$"),  # embed_tokens, wte/wpe, lm_head (tied or not)
    "attention": re.compile(r"attn|attention"),  # attn, self_attn, self_attention
    "mlp": re.compile(r"mlp|^(?:feed_forward|ffn|block_sparse_moe)$"),  # mlp, Mixtral's experts
}
assert set(MODULE_CLASS_PARTS) == set(WeightLayout.MODULE_CLASSES)  # the same classes, tried in another order


def module_class(name: str) -> tuple[int, str]:
    """(index in WeightLayout.MODULE_CLASSES, the part of the name that decided it). A tensor of
    no class is a MethodError naming it: guessing would merge it with weights searched for
    something else (a classifier head, a router), silently."""
    parts = name.split(".")
    for module, pattern in MODULE_CLASS_PARTS.items():
        for part in parts:
            if pattern.search(part):
                return WeightLayout.MODULE_CLASSES.index(module), part
    raise MethodError(f"tensor {name!r} is in no module class ({', '.join(WeightLayout.MODULE_CLASSES)}): "
                      "weights per module_classes cannot merge it; use per: model or per: layer_groups")


def tensor_module_classes(tensor_names: Sequence[str]) -> dict[str, int]:
    """Module class (index in WeightLayout.MODULE_CLASSES) of each tensor, as tensor_groups gives layer groups."""
    return {name: module_class(name)[0] for name in tensor_names}


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
