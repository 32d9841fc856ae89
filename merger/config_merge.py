"""Run a mergekit config: `recycle merge --config mergekit.yaml --out DIR`.

The pool is mapped once (merger.pool: zero-copy views), every tensor's parameters are
resolved before anything is written (a bad config touches nothing), then each tensor
is merged with mergekit's arithmetic (merger/exact.py) into one reused buffer and
streamed into the safetensors file. The output goes to a temporary directory renamed
into place at the end, like an export. Model references are local paths (relative
ones to the working directory, as mergekit reads them).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
import yaml

from contracts.models import CheckpointRef, PoolSpec

from merger.errors import ExportExistsError
from merger.exact import Scratch
from merger.export import INDEX_FILE, SINGLE_FILE, _copy_model_files, plan_shards
from merger.mergekit_config import MergeConfigError, layer_count, parse_config, plan_tensors
from merger.planned import merge_planned
from merger.pool import CheckpointPool
from merger.safetensors_mmap import write_file

# mergekit's default output shard size is 5B parameters; ours counts bytes, as exports do.
MAX_SHARD_BYTES = 5 * 1024**3


def read_config(path: str | Path):
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise MergeConfigError(f"cannot read {path}: {error}") from None
    return parse_config(raw)


def pool_spec(models: tuple[str, ...], cwd: Path) -> PoolSpec:
    checkpoints, taken = [], set()
    for ref in models:
        path = (cwd / ref).expanduser()
        if not path.exists():
            raise MergeConfigError(
                f"model {ref!r} is not a local path (from {cwd}); recycle merges local checkpoints "
                "(HF directories or .safetensors files): download hub models first"
            )
        stem = re.sub(r"[^A-Za-z0-9_.-]", "-", path.resolve().name.removesuffix(".safetensors"))[:56] or "model"
        name, k = stem if stem[0].isalnum() else f"m{stem}", 2
        while name in taken:
            name, k = f"{stem}-{k}", k + 1
        taken.add(name)
        checkpoints.append(CheckpointRef(name=name, path=str(path.resolve())))
    return PoolSpec(name="mergekit", checkpoints=tuple(checkpoints))


def merge_config(config_path: str | Path, out_dir: str | Path, seed: int | None = None,
                 cwd: str | Path | None = None, max_shard_bytes: int = MAX_SHARD_BYTES) -> Path:
    """Run the config at `config_path` into `out_dir` (absent or empty); return it."""
    config_path = Path(config_path)
    config = read_config(config_path)
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportExistsError(f"output {out_dir} already exists and is not empty: refusing to overwrite it")
    spec = pool_spec(config.models, Path(cwd or os.getcwd()))
    with CheckpointPool.open(spec) as pool:
        refs = {ref: i for i, ref in enumerate(config.models)}
        plans = plan_tensors(config, refs, pool.tensor_names, layer_count(pool.config_dir, pool.tensor_names))
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
        try:
            _write(pool, plans, config.out_dtype or config.dtype, tmp, generator, max_shard_bytes)
            _copy_model_files(pool, tmp, config.out_dtype or config.dtype)
            shutil.copyfile(config_path, tmp / "mergekit_config.yml")  # mergekit keeps its config there too
            os.chmod(tmp, 0o755)
            os.rename(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out_dir


def _write(pool: CheckpointPool, plans: dict, out_dtype: torch.dtype | None, tmp: Path,
           generator: torch.Generator | None, max_shard_bytes: int) -> None:
    def dtype_of(name: str) -> torch.dtype:
        own = pool.dtype(name)
        return out_dtype if out_dtype is not None and own.is_floating_point else own

    entries = [(name, dtype_of(name), tuple(pool.shape(name))) for name in pool.tensor_names]
    sizes = {name: math.prod(shape) * dt.itemsize for name, dt, shape in entries}
    shards = plan_shards([(e, sizes[e[0]]) for e in entries], max_shard_bytes)
    names = [SINGLE_FILE] if len(shards) == 1 else [
        f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    # Two byte buffers, alternating: one is merged into while the other is written out.
    largest = max(sizes.values(), default=0)
    buffers = [torch.empty(largest, dtype=torch.uint8), torch.empty(largest, dtype=torch.uint8)]
    scratch = Scratch()
    filled = [0]

    def fill(name: str, dt: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        view = buffers[filled[0] % 2][: sizes[name]].view(dt).view(shape)
        filled[0] += 1
        merge_planned(pool, plans[name], name, view, scratch, generator)
        return view

    for file_name, shard in zip(names, shards):
        with open(tmp / file_name, "wb") as f:
            write_file(f, shard, fill, {"format": "pt"}, overlap=True)
    if len(shards) > 1:
        import json

        index = {"metadata": {"total_size": sum(sizes.values())},
                 "weight_map": {name: names[i] for i, shard in enumerate(shards) for name, _, _ in shard}}
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
