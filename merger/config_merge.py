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
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
import yaml

from contracts.models import CheckpointRef, PoolSpec

from merger.direct_io import DirectFile
from merger.errors import ExportExistsError
from merger.exact import Scratch
from merger.export import INDEX_FILE, SINGLE_FILE, _copy_model_files, plan_shards
from merger.mergekit_config import MergeConfigError, layer_count, parse_config, plan_tensors
from merger.planned import merge_planned
from merger.pool import CheckpointPool
from merger.safetensors_mmap import file_order, write_file

# mergekit's default output shard size is 5B parameters; ours counts bytes, as exports do.
MAX_SHARD_BYTES = 5 * 1024**3
# Threads merging ahead of the writer (each op single-threaded: see recycle/commands/merge.py).
MERGE_THREADS = 2


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


class _AheadMerger:
    """`fill` for write_file that merges the next tensors on worker threads while this thread
    writes: torch ops and file writes release the GIL, so on two cores the merge hides behind
    the write. Tensor k lives in buffer k % BUFFERS until it is written; at most BUFFERS - 1
    tensors are merged ahead, so a buffer is never refilled before its tensor was written.
    DARE draws random drops: one worker then keeps the generator's order fixed."""

    BUFFERS = 4

    def __init__(self, pool: CheckpointPool, plans: dict, sizes: dict[str, int], generator):
        self.entries: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {}
        largest = max(sizes.values(), default=0)
        self.buffers = [torch.empty(largest, dtype=torch.uint8) for _ in range(self.BUFFERS)]
        self.pool, self.plans, self.sizes, self.generator = pool, plans, sizes, generator
        random = any(p.kind is not None and p.kind.sparsify == "random" for p in plans.values())
        self.workers = ThreadPoolExecutor(1 if random else MERGE_THREADS, thread_name_prefix="merge")
        self.local = threading.local()
        self.order: list[str] = []
        self.pending: dict[str, Future] = {}
        self.count = 0

    def expect(self, entries: list) -> None:
        self.entries.update({name: (dtype, shape) for name, dtype, shape in entries})
        self.order, self.next = [name for name, _, _ in entries], 0
        for _ in range(self.BUFFERS - 1):
            self._submit()

    def _submit(self) -> None:
        if self.next < len(self.order):
            name = self.order[self.next]
            buffer = self.buffers[self.count % self.BUFFERS]
            self.pending[name] = self.workers.submit(self._merge, name, buffer)
            self.next, self.count = self.next + 1, self.count + 1

    def _merge(self, name: str, buffer: torch.Tensor) -> torch.Tensor:
        if not hasattr(self.local, "scratch"):
            self.local.scratch = Scratch()  # one per worker thread
        dtype, shape = self.entries[name]
        view = buffer[: self.sizes[name]].view(dtype).view(shape)
        merge_planned(self.pool, self.plans[name], name, view, self.local.scratch, self.generator)
        return view

    def fill(self, name: str, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        view = self.pending.pop(name).result()
        self._submit()  # the tensor before this one is written: its buffer may be refilled
        return view

    def close(self) -> None:
        self.workers.shutdown(cancel_futures=True)


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
    merger = _AheadMerger(pool, plans, sizes, generator)
    try:
        for file_name, shard in zip(names, shards):
            merger.expect(file_order(shard))
            with DirectFile(tmp / file_name) as f:
                write_file(f, shard, merger.fill, {"format": "pt"})
    finally:
        merger.close()
    if len(shards) > 1:
        import json

        index = {"metadata": {"total_size": sum(sizes.values())},
                 "weight_map": {name: names[i] for i, shard in enumerate(shards) for name, _, _ in shard}}
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
