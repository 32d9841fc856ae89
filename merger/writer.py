"""Write a merged model as safetensors files: tensors merged ahead on worker threads, written in
order with O_DIRECT (merger/direct_io.py), never the whole merged model in memory.

Used by exports (merger/export.py) and `recycle merge --config` (merger/config_merge.py).
"""

from __future__ import annotations

import json
import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Mapping

import torch

from merger.direct_io import DirectFile
from merger.exact import Scratch
from merger.planned import TensorPlan, merge_planned
from merger.pool import CheckpointPool
from merger.safetensors_mmap import file_order, write_file

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Threads merging ahead of the writer (each op single-threaded: see recycle/commands/merge.py);
# two kept the writer busy on the 2-core box (4 x 1.1B bf16: the merge waited on ~2 s of 13 s).
MERGE_THREADS = 2


def write_weights(pool: CheckpointPool, plans: Mapping[str, TensorPlan], out_dtype: torch.dtype | None, folder: Path,
                  max_shard_bytes: int, metadata: dict[str, str], generator: torch.Generator | None = None) -> None:
    """Every pool tensor, merged by its plan, into `folder` (one file, or HF shards + index).
    `out_dtype` casts the floating tensors (None keeps each tensor's stored dtype)."""

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
            with DirectFile(folder / file_name) as f:
                write_file(f, shard, merger.fill, metadata)
    finally:
        merger.close()
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(sizes.values())},
                 "weight_map": {name: names[i] for i, shard in enumerate(shards) for name, _, _ in shard}}
        (folder / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def plan_shards(items: list[tuple[object, int]], max_shard_bytes: int) -> list[list]:
    """Group items in order into shards of at most max_shard_bytes (a larger item gets its own)."""
    shards: list[list] = [[]]
    size = 0
    for item, nbytes in items:
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(item)
        size += nbytes
    return shards


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
