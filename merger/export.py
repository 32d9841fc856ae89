"""Export a merge as a loadable HF model directory, plus a mergekit YAML that reproduces it.

The merge is streamed tensor by tensor into the safetensors files, so peak memory is
one tensor (the largest), never a whole merged model. Everything is written to a
temporary directory beside the target and renamed into place at the end: a crash
never leaves a half export under the final name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch
import yaml

from contracts.models import MergeSpec, SearchSpec, WeightLayout
from contracts.trials import TrialResult

from merger.errors import ExportError, ExportExistsError
from merger.layers import MODULE_CLASS_PARTS, module_class
from merger.methods import MergeMethod, TensorPlan, make_method
from merger.parameters import Parameter, Scope, evaluate_setting
from merger.pool import CheckpointPool
from merger.writer import INDEX_FILE, SINGLE_FILE, plan_shards, write_weights  # noqa: F401 - re-exported

# Copied from the pool's config directory when present (tokenizer and generation setup).
COPIED_FILES = (
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)
DTYPE_CONFIG_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def export_merge(
    pool: CheckpointPool,
    spec: MergeSpec,
    weights: Sequence[float],
    out_dir: str | Path,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = 2 * 1024**3,
    metadata: dict | None = None,
    parameters: dict | None = None,
) -> Path:
    """Write the merge to `out_dir` (which must not exist, or be empty) and return it.

    `dtype` casts the floating tensors (None keeps the pool's). The directory holds
    `model.safetensors` (or HF shards + index), the pool's config.json (dtype updated),
    generation and tokenizer files, and `mergekit.yaml`. `parameters`: the method's own
    (e.g. ties' density), see merger.task_vectors.
    """
    method = make_method(pool, spec, parameters)
    checked = method.check_weights(weights)  # fail before touching the disk
    if dtype is not None and dtype not in DTYPE_CONFIG_NAMES:
        raise ExportError(f"export dtype must be one of {', '.join(DTYPE_CONFIG_NAMES.values())}, got {dtype}")
    if max_shard_bytes <= 0:
        raise ExportError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportExistsError(f"export target {out_dir} already exists and is not empty: refusing to overwrite it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        plans = [method.plan(w) for w in method.split(weights)]  # one per layer group or module class
        # mergekit's own arithmetic (merger/exact.py), so mergekit.yaml reproduces it bit for bit.
        write_weights(pool, {name: plans[method.group_of.get(name, 0)] for name in pool.tensor_names}, dtype, tmp,
                      max_shard_bytes, _file_metadata(pool, method, checked, metadata), method.generator)
        _copy_model_files(pool, tmp, dtype)
        out_dtype = dtype or pool.float_dtype or torch.float32
        (tmp / "mergekit.yaml").write_text(mergekit_yaml(pool, method, plans, out_dtype))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        os.rename(tmp, out_dir)  # atomic; replaces an empty directory, fails on a filled one
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _file_metadata(pool: CheckpointPool, method: MergeMethod, weights: list[float], extra: dict | None) -> dict[str, str]:
    # safetensors metadata is str -> str; "format": "pt" is what transformers expects.
    meta = {
        "recycle.method": method.name,
        "recycle.base": method.spec.base or "",
        "recycle.checkpoints": json.dumps(pool.names),
        "recycle.weights": json.dumps(weights),
    }
    for key, value in (extra or {}).items():
        meta[str(key)] = value if isinstance(value, str) else json.dumps(value)
    meta["format"] = "pt"
    return meta


def _copy_model_files(pool: CheckpointPool, tmp: Path, dtype: torch.dtype | None) -> None:
    src = pool.config_dir
    if src is None:
        return  # single-file pools carry no config: the export is weights + YAML only
    config = json.loads((src / "config.json").read_text())
    if dtype is not None and dtype != pool.float_dtype:
        keys = [k for k in ("torch_dtype", "dtype") if k in config] or ["dtype"]
        for key in keys:
            config[key] = DTYPE_CONFIG_NAMES[dtype]
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    names = [n for n in COPIED_FILES if (src / n).is_file()]
    names += sorted(p.name for p in src.glob("chat_template*") if p.is_file())
    for name in names:
        shutil.copyfile(src / name, tmp / name)


def mergekit_config(pool: CheckpointPool, method: MergeMethod, plans: Sequence[TensorPlan], out_dtype: torch.dtype) -> dict:
    """mergekit's description of the same merge (`mergekit-yaml mergekit.yaml OUT`); `plans`: one
    per group. One group: a `models` list. Layer groups: one slice per group over its layers,
    every source (the base last, as the plan lists it) with its layer_range and the group's
    parameters; mergekit merges embeddings with the first slice, the final norm and lm_head
    with the last, as merger.layers groups them. Module classes (mergekit has no slices for
    them): a `models` list whose parameters that differ between classes are `{filter, value}`
    conditions, one per filter of module_class_filters."""
    plan = plans[0]
    compute = plan.compute or pool.float_dtype or torch.float32

    def parameters(plan: TensorPlan, k: int) -> dict:
        return {name: values[k] for name, values in plan.per_input.items()}

    config: dict = {"merge_method": method.mergekit_name}
    if plan.base is not None:
        config["base_model"] = str(pool.paths[plan.base])
    if len(plans) == 1:
        config["models"] = [{"model": str(pool.paths[i]), "parameters": parameters(plan, k)}
                            for k, i in enumerate(plan.inputs) if i != plan.base]
    elif method.spec.weights.per == "module_classes":
        filters = module_class_filters(pool.tensor_names, method.group_of)
        config["models"] = [{"model": str(pool.paths[i]), "parameters": _by_class(plans, k, filters)}
                            for k, i in enumerate(plan.inputs) if i != plan.base]
    else:
        config["slices"] = [
            {"sources": [{"model": str(pool.paths[i]), "layer_range": [start, end],
                          **({"parameters": parameters(group, k)} if i != group.base else {})}
                         for k, i in enumerate(group.inputs)]}
            for group, (start, end) in zip(plans, method.layer_ranges(), strict=True)
        ]
    config["parameters"] = dict(plan.shared)
    config["dtype"] = DTYPE_CONFIG_NAMES.get(compute, "float32")
    if out_dtype != compute:
        config["out_dtype"] = DTYPE_CONFIG_NAMES[out_dtype]
    return config


# What a condition's value stands for when module_class_filters checks its filters: a class index.
_CLASS = Parameter("module class", float, Scope.SHARED)


def module_class_filters(tensor_names: Sequence[str], class_of: dict[str, int]) -> list[tuple[str, int]]:
    """(filter, module class) conditions, in order, such that the first whose filter is a substring
    of a tensor's name (mergekit 0.1.5's rule, and merger.parameters') gives every tensor its class.

    The name parts that decided the classes (merger.layers.module_class), in the order they
    are tried (norms first: post_attention_layernorm is no attention), a part dropped where a
    shorter one of its class is in it (norm covers input_layernorm). Checked tensor by tensor;
    where parts cannot tell the classes apart, the exact tensor names, longest first (an
    earlier filter can then only match a tensor by being its name)."""
    by_class: dict[int, set[str]] = {}
    for name in tensor_names:
        group, part = module_class(name)
        by_class.setdefault(group, set()).add(part)
    filters = [(part, group) for group in _trying_order() for part in sorted(by_class.get(group, ()))
               if not any(other != part and other in part for other in by_class[group])]
    if not _misfiled(filters, tensor_names, class_of):
        return filters
    filters = sorted(((name, class_of[name]) for name in tensor_names), key=lambda f: -len(f[0]))
    wrong = _misfiled(filters, tensor_names, class_of)
    if wrong:
        raise ExportError(f"no mergekit filters give tensor {wrong[0]!r} its module class")
    return filters


def _trying_order() -> list[int]:
    return [WeightLayout.MODULE_CLASSES.index(module) for module in MODULE_CLASS_PARTS]


def _misfiled(filters: list[tuple[str, int]], tensor_names: Sequence[str], class_of: dict[str, int]) -> list[str]:
    """Tensors whose first matching filter is not their class (or that none matches)."""
    conditions = [{"filter": f, "value": group} for f, group in filters]
    return [name for name in tensor_names if evaluate_setting(_CLASS, name, conditions) != class_of[name]]


def _by_class(plans: Sequence[TensorPlan], k: int, filters: list[tuple[str, int]]) -> dict:
    """Input k's parameters: a value where every class has the same, else one condition per filter."""
    out = {}
    for name in plans[0].per_input:
        values = [plan.per_input[name][k] for plan in plans]
        same = all(v == values[0] for v in values)
        out[name] = values[0] if same else [{"filter": f, "value": values[group]} for f, group in filters]
    return out


def mergekit_yaml(pool: CheckpointPool, method: MergeMethod, plans: Sequence[TensorPlan], out_dtype: torch.dtype) -> str:
    header = (
        f"# Written by recycle: this merge of pool {pool.spec.name!r} with mergekit.\n"
        "# Reproduce with: mergekit-yaml mergekit.yaml OUTPUT_DIR\n"
        "# Weights are already clipped and normalized when the search normalizes them.\n"
    )
    return header + yaml.safe_dump(mergekit_config(pool, method, plans, out_dtype), sort_keys=False)


def _weights_by_name(spec: SearchSpec, weights: Sequence[float]) -> dict:
    """Checkpoint -> weight; per layer group or module class: checkpoint -> its weight in each."""
    layout = spec.merge.weights
    by_name = layout.by_checkpoint(spec.pool.names, weights)
    return {name: values if layout.n_groups > 1 else values[0] for name, values in by_name.items()}


def export_trial(search_id: str, spec: SearchSpec, result: TrialResult, out: Path,
                 allowed_roots: Sequence[str | Path] | None = None, dtype=None) -> Path:
    """One trial's merge as an HF directory + mergekit.yaml + recycle.json (search, trial,
    weights by checkpoint, scores), at `out` (which must not exist or be empty). Serves
    the API's export route and `recycle export`. Raises the merger's PoolError,
    WeightsError or ExportExistsError for bad input. `dtype`: a torch dtype to cast
    the floating tensors to (None keeps the pool's)."""
    pool = CheckpointPool.open(spec.pool, allowed_roots=allowed_roots)
    try:
        metadata = {"search_id": search_id, "trial_id": result.trial_id, "source": result.proposal.source.model_dump(),
                    "weights": _weights_by_name(spec, result.proposal.weights),
                    "scores": result.scores, "report": result.report, "exported_at": time.time()}
        export_merge(pool, spec.merge, list(result.proposal.weights), out, dtype=dtype, metadata=metadata)
        (Path(out) / "recycle.json").write_text(json.dumps(metadata, indent=2))
    finally:
        pool.close()
    return Path(out)
