"""`recycle merge`: checkpoints and weights in, or a mergekit config in; one merged HF directory out.

The config path imports only what it merges with (torch and merger; no transformers):
on small models a one-shot merge is decided by start-up time.
"""

from __future__ import annotations

from pathlib import Path

from recycle.errors import UsageError


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
    if args.config is not None:
        return merge_from_config(args)
    if not args.checkpoints or args.weights is None:
        raise UsageError("give checkpoints and --weights, or --config mergekit.yaml")
    if args.seed is not None:
        raise UsageError("--seed applies to --config merges (dare_linear, dare_ties draw random drops)")
    import torch

    from contracts import CheckpointRef, MergeSpec, PoolSpec
    from merger import CheckpointPool, export_merge
    from recycle.commands import common

    torch.set_num_threads(1)  # as for --config (below): the merge runs on its own worker threads

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


def merge_from_config(args) -> int:
    given = [flag for flag, value in (("checkpoints", args.checkpoints), ("--weights", args.weights),
                                      ("--dtype", args.dtype), ("--no-normalize", args.no_normalize),
                                      ("--base", args.base)) if value]
    if given:
        raise UsageError(f"--config describes the whole merge: drop {', '.join(given)} (set dtype/out_dtype in the config)")
    import torch

    from merger.config_merge import merge_config
    from merger.errors import MergerError

    # One intra-op thread: each merge op is small (a tensor or a 64K-element run), and with a
    # busy neighbour two threads waited on each other at every op (31 s instead of 3.1 s for
    # 4 x SmolLM2-135M, bench/merge.py --race, 2-core machine at load 13). Tensors are merged
    # on two worker threads meanwhile, ahead of the writer (merger/writer.py).
    torch.set_num_threads(1)

    try:
        out = merge_config(args.config, args.out, seed=args.seed)
    except MergerError as error:
        if isinstance(error, FileExistsError):
            raise
        raise UsageError(str(error)) from None
    print(f"merged {args.config} into {out}")
    return 0
