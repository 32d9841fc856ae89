"""Read a mergekit YAML config and resolve it, tensor by tensor, into TensorPlans.

Supported: `merge_method` (linear, task_arithmetic, ties, dare_linear, dare_ties),
`models` or `slices`, `base_model` (also per slice), `parameters` (top level, per
slice, per model: scalars, gradients, `{filter, value}` conditions), `dtype`,
`out_dtype`. Slices must keep every layer where it is (each source's layer_range is
its output position, together covering the model): that is a merge in place; slices
that move, drop or repeat layers build another architecture, which mergekit does.
Anything else is refused with an error naming it, before any tensor is read.

Parameters resolve as mergekit 0.1.5's MergePlanner does: per tensor, the per-model
setting first, then the slice's, then the top level's; a layer's position
t = i / (layers in its slice - 1) interpolates gradients; tensors outside the layers
(embeddings, final norm, lm_head) take t = 0 and the first slice (embeddings) or the
last (the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from merger.errors import MergerError
from merger.layers import EMBEDDING, LAYER, layer_count  # noqa: F401 - layer_count re-exported
from merger.methods import MERGE_METHODS, MergeMethod
from merger.planned import TensorPlan
from merger.parameters import Scope, resolve

SUPPORTED_METHODS = ("linear", "task_arithmetic", "ties", "dare_linear", "dare_ties")
TOP_FIELDS = {"merge_method", "models", "slices", "base_model", "dtype", "out_dtype", "parameters"}
MODEL_FIELDS = {"model", "parameters"}
SLICE_FIELDS = {"sources", "base_model", "parameters"}
SOURCE_FIELDS = {"model", "layer_range", "parameters"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


class MergeConfigError(MergerError):
    """A mergekit config recycle cannot run (unsupported field or method, bad value)."""


@dataclass(frozen=True)
class Source:
    model: str  # the config's reference, as written
    parameters: dict | None


@dataclass(frozen=True)
class OutSlice:
    sources: tuple[Source, ...]
    base: str | None
    parameters: dict | None
    start: int  # first output layer
    end: int


@dataclass(frozen=True)
class MergeConfig:
    method: type[MergeMethod]
    models: tuple[str, ...]  # every referenced model, in first-mention order (the pool's order)
    base: str | None
    slices: tuple[OutSlice, ...]  # start/end are filled in by `layers` for the `models` form
    parameters: dict | None
    dtype: torch.dtype | None
    out_dtype: torch.dtype | None
    from_models: bool  # the `models:` form (one slice over all layers)


def _refuse_unknown(given: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise MergeConfigError(
            f"unsupported mergekit field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} {where}; "
            f"recycle runs: {', '.join(sorted(allowed))}"
        )


def _mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise MergeConfigError(f"{where} must be a mapping, got {value!r}")
    return value


def _model_ref(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise MergeConfigError(f"{where}: model must be a path (a string), got {value!r}")
    if "+" in value and not Path(value).exists():
        raise MergeConfigError(f"{where}: model {value!r} applies a LoRA (model+lora), which recycle does not support")
    return value


def _dtype(config: dict, key: str) -> torch.dtype | None:
    name = config.get(key)
    if name is None:
        return None
    name = str(name).removeprefix("torch.")
    if name not in DTYPES:
        raise MergeConfigError(f"{key}: {config[key]!r} is not one of {', '.join(DTYPES)}")
    return DTYPES[name]


def parse_config(raw: Any) -> MergeConfig:
    """Check a loaded YAML document; refuse what recycle cannot run, naming it."""
    config = _mapping(raw, "a mergekit config")
    _refuse_unknown(config, TOP_FIELDS, "at the top level")
    name = config.get("merge_method")
    if name not in SUPPORTED_METHODS:
        raise MergeConfigError(
            f"merge_method {name!r} is not supported by recycle; supported: {', '.join(SUPPORTED_METHODS)}"
        )
    method = MERGE_METHODS[name]
    if ("models" in config) == ("slices" in config):
        raise MergeConfigError("give exactly one of 'models' or 'slices'")
    base = _model_ref(config["base_model"], "base_model") if config.get("base_model") is not None else None
    check_names = _parameter_checker(method)
    check_names(config.get("parameters"), "in the top-level parameters")

    slices = []
    if "models" in config:
        entries = config["models"]
        if not isinstance(entries, list) or not entries:
            raise MergeConfigError("models must be a non-empty list")
        sources = []
        for k, entry in enumerate(entries):
            entry = _mapping(entry, f"models[{k}]")
            _refuse_unknown(entry, MODEL_FIELDS, f"in models[{k}]")
            check_names(entry.get("parameters"), f"in models[{k}]")
            sources.append(Source(_model_ref(entry.get("model"), f"models[{k}]"), entry.get("parameters")))
        slices.append(OutSlice(tuple(sources), None, None, 0, 0))
    else:
        entries = config["slices"]
        if not isinstance(entries, list) or not entries:
            raise MergeConfigError("slices must be a non-empty list")
        position = 0
        for k, entry in enumerate(entries):
            entry = _mapping(entry, f"slices[{k}]")
            _refuse_unknown(entry, SLICE_FIELDS, f"in slices[{k}]")
            check_names(entry.get("parameters"), f"in slices[{k}]")
            sources, ranges = [], set()
            for j, source in enumerate(entry.get("sources") or []):
                where = f"slices[{k}].sources[{j}]"
                source = _mapping(source, where)
                _refuse_unknown(source, SOURCE_FIELDS, f"in {where}")
                check_names(source.get("parameters"), f"in {where}")
                layer_range = source.get("layer_range")
                if not (isinstance(layer_range, list) and len(layer_range) == 2 and all(type(x) is int for x in layer_range)
                        and 0 <= layer_range[0] < layer_range[1]):
                    raise MergeConfigError(f"{where}: layer_range must be [first, end) with 0 <= first < end, got {layer_range!r}")
                ranges.add(tuple(layer_range))
                sources.append(Source(_model_ref(source.get("model"), where), source.get("parameters")))
            if not sources:
                raise MergeConfigError(f"slices[{k}] has no sources")
            if ranges != {(position, position + (next(iter(ranges))[1] - next(iter(ranges))[0]))}:
                raise MergeConfigError(
                    f"slices[{k}]: layer ranges {sorted(ranges)} move, drop or repeat layers (output layers start at "
                    f"{position}); recycle merges in place: every source of a slice must cover the same layers, "
                    "the slices in order, one after the other"
                )
            start, end = next(iter(ranges))
            slice_base = _model_ref(entry["base_model"], f"slices[{k}].base_model") if entry.get("base_model") else None
            slices.append(OutSlice(tuple(sources), slice_base, entry.get("parameters"), start, end))
            position = end

    for k, s in enumerate(slices):
        refs = [src.model for src in s.sources]
        repeated = sorted({r for r in refs if refs.count(r) > 1})
        if repeated:
            raise MergeConfigError(f"{'models' if 'models' in config else f'slices[{k}]'} list {', '.join(map(repr, repeated))} twice")
    models: list[str] = []
    for s in slices:
        for ref in [src.model for src in s.sources] + [s.base or base]:
            if ref is not None and ref not in models:
                models.append(ref)
    return MergeConfig(method, tuple(models), base, tuple(slices), config.get("parameters"),
                       _dtype(config, "dtype"), _dtype(config, "out_dtype"), "models" in config)


def _parameter_checker(method: type[MergeMethod]):
    declared = {p.name for p in method.parameters}

    def check(parameters: Any, where: str) -> None:
        if parameters is None:
            return
        _mapping(parameters, f"parameters {where}")
        unknown = sorted(set(parameters) - declared)
        if unknown:
            raise MergeConfigError(
                f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} {where} for "
                f"merge_method {method.name!r}; it takes: {', '.join(sorted(declared))}"
            )

    return check


def plan_tensors(config: MergeConfig, refs: dict[str, int], tensor_names: list[str], layers: int) -> dict[str, TensorPlan]:
    """Every tensor's TensorPlan; `refs` maps each config model reference to its pool index."""
    slices = list(config.slices)
    if config.from_models:
        slices = [OutSlice(slices[0].sources, None, None, 0, layers)]
    elif slices[-1].end != layers:
        raise MergeConfigError(
            f"the slices cover layers 0-{slices[-1].end - 1}, the model has {layers}: recycle merges in place, "
            "so the slices must cover every layer"
        )
    plans = {}
    for name in tensor_names:
        match = LAYER.search(name)
        if match is None:
            piece = slices[0] if EMBEDDING.search(name) else slices[-1]
            t = 0.0
        else:
            index = int(match.group(1))
            piece = next((s for s in slices if s.start <= index < s.end), None)
            if piece is None:
                raise MergeConfigError(f"tensor {name!r} is in layer {index}, outside every slice (the model has {layers} layers)")
            count = piece.end - piece.start
            t = (index - piece.start) / (count - 1) if count > 1 else 1.0
        plans[name] = _plan(config, piece, refs, name, t)
    return plans


def _plan(config: MergeConfig, piece: OutSlice, refs: dict[str, int], name: str, t: float) -> TensorPlan:
    method = config.method
    base = piece.base or config.base
    sources = list(piece.sources)
    if base is not None and base not in [s.model for s in sources]:
        if not config.from_models:
            raise MergeConfigError(f"base_model {base!r} must be one of the sources of every slice (mergekit's rule)")
        sources.append(Source(base, None))  # mergekit adds a base that is not listed, last
    if method.needs_base and base is None:
        raise MergeConfigError(f"merge_method {method.name!r} needs a base_model")
    shared_scopes = [piece.parameters, config.parameters]
    shared = {p.name: resolve(p, shared_scopes, name, t) for p in method.parameters if p.scope is Scope.SHARED}
    per_input: dict[str, list] = {p.name: [] for p in method.parameters if p.per_input}
    for source in sources:
        is_base = source.model == base
        scopes = [s.parameters for s in piece.sources if s.model == source.model] + shared_scopes
        for p in method.parameters:
            if not p.per_input:
                continue
            if p.scope is Scope.NON_BASE and is_base:
                per_input[p.name].append(None)  # not read for the base
            else:
                per_input[p.name].append(resolve(p, scopes, name, t, f" of model {source.model!r}"))
    return TensorPlan(
        inputs=tuple(refs[s.model] for s in sources),
        base=refs[base] if base is not None and method.needs_base else None,
        per_input={k: tuple(v) for k, v in per_input.items()},
        shared=shared,
        compute=config.dtype,
        kind=method.kind,
    )
