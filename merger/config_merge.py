"""Run a mergekit config: `recycle merge --config mergekit.yaml --out DIR`.

The pool is mapped once (merger.pool: zero-copy views), every tensor's parameters are
resolved before anything is written (a bad config touches nothing), then each tensor
is merged with mergekit's arithmetic (merger/exact.py) into one reused buffer and
streamed into the safetensors file. The output goes to a temporary directory renamed
into place at the end, like an export. Model references are local paths (relative
ones to the working directory, as mergekit reads them).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
import yaml

from contracts.models import CheckpointRef, PoolSpec

from merger.errors import ExportExistsError
from merger.export import _copy_model_files
from merger.mergekit_config import MergeConfigError, layer_count, parse_config, plan_tensors
from merger.pool import CheckpointPool
from merger.writer import write_weights

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
            write_weights(pool, plans, config.out_dtype or config.dtype, tmp, max_shard_bytes, {"format": "pt"}, generator)
            _copy_model_files(pool, tmp, config.out_dtype or config.dtype)
            shutil.copyfile(config_path, tmp / "mergekit_config.yml")  # mergekit keeps its config there too
            os.chmod(tmp, 0o755)
            os.rename(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out_dir
