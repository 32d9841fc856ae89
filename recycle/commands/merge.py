"""`recycle merge`: checkpoints and weights in, one merged HF directory (+ mergekit.yaml) out."""

from __future__ import annotations

from pathlib import Path

from contracts import CheckpointRef, MergeSpec, PoolSpec
from merger import CheckpointPool, export_merge
from recycle.commands import common


def checkpoint_name(path: str, taken: set[str]) -> str:
    """A pool name from a path (its folder or file stem), made unique."""
    stem = Path(path.rstrip("/")).name.removesuffix(".safetensors") or "checkpoint"
    name = "".join(c if c.isalnum() or c in "_.-" else "-" for c in stem)[:60] or "checkpoint"
    candidate, suffix = name, 2
    while candidate in taken:
        candidate, suffix = f"{name}-{suffix}", suffix + 1
    taken.add(candidate)
    return candidate


def command_merge(args) -> int:
    taken: set[str] = set()
    pool_spec = PoolSpec(
        name="cli", checkpoints=[CheckpointRef(name=checkpoint_name(p, taken), path=str(Path(p).resolve())) for p in args.checkpoints]
    )
    base = pool_spec.checkpoints[args.base].name if args.base is not None else None
    merge = MergeSpec(normalize=not (args.no_normalize or base is not None), base=base)
    pool = CheckpointPool.open(pool_spec)
    out = export_merge(pool, merge, args.weights, Path(args.out), dtype=common.torch_dtype(args.dtype))
    common.console.print(f"merged {len(pool.names)} checkpoints into {out}")
    return 0
