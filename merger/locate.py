"""Find a checkpoint's safetensors files, refusing anything unsafe, before reading any.

A checkpoint path is an HF-style directory (`model.safetensors`, or shards listed in
`model.safetensors.index.json`) or a single `.safetensors` file. Pickled checkpoints
are refused: unpickling runs arbitrary code. With allowed roots, every path we would
open must resolve (symlinks followed) inside one of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from contracts.models import CheckpointRef

from merger.errors import PoolError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


@dataclass(frozen=True)
class Located:
    name: str
    path: Path  # resolved checkpoint path (directory or file)
    files: tuple[Path, ...]  # resolved safetensors files
    weight_map: dict[str, str] | None  # tensor -> shard file name, from the index
    config_dir: Path | None  # the directory when it holds config.json


def resolve_roots(roots: Sequence[str | Path] | None) -> list[Path] | None:
    return None if roots is None else [Path(r).expanduser().resolve() for r in roots]


def within_roots(path: str | Path, roots: Sequence[str | Path] | None) -> bool:
    """Whether `path`, symlinks followed, lies inside one of `roots` (None: no restriction)."""
    resolved = resolve_roots(roots)
    real = Path(path).expanduser().resolve()
    return resolved is None or any(real.is_relative_to(root) for root in resolved)


def locate(ref: CheckpointRef, roots: list[Path] | None) -> Located:
    given = Path(ref.path).expanduser()
    path = given.resolve()
    # Roots first: a path outside them gets the same answer whether or not it exists.
    _check_inside(ref.name, ref.path, path, roots)
    if not path.exists():
        raise PoolError(f"checkpoint {ref.name!r}: path {ref.path} does not exist")
    if path.is_file():
        _refuse_pickle(ref.name, path)
        if path.suffix != ".safetensors":
            raise PoolError(f"checkpoint {ref.name!r}: {path} is not a .safetensors file")
        return Located(ref.name, path, (path,), None, None)
    if not path.is_dir():
        raise PoolError(f"checkpoint {ref.name!r}: {path} is neither a file nor a directory")

    weight_map = None
    if (path / INDEX_FILE).exists():
        weight_map = _read_index(ref.name, path / INDEX_FILE)
        names = sorted(set(weight_map.values()))
    elif (path / SINGLE_FILE).exists():
        names = [SINGLE_FILE]
    else:
        _refuse_pickled_dir(ref.name, path)
        raise PoolError(f"checkpoint {ref.name!r}: {path} holds neither {SINGLE_FILE} nor {INDEX_FILE}")

    files = []
    for file_name in names:
        file = path / file_name
        if not file.exists():
            raise PoolError(f"checkpoint {ref.name!r}: shard {file_name} listed in {INDEX_FILE} is missing from {path}")
        real = file.resolve()
        # A file inside the directory may itself be a link out of the allowed roots.
        _check_inside(ref.name, str(file), real, roots)
        if not real.is_file():
            raise PoolError(f"checkpoint {ref.name!r}: {file} is not a regular file")
        files.append(real)
    config_dir = path if (path / "config.json").is_file() else None
    return Located(ref.name, path, tuple(files), weight_map, config_dir)


def _check_inside(name: str, shown: str, real: Path, roots: list[Path] | None) -> None:
    if roots is not None and not any(real.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots) or "(none)"
        raise PoolError(f"checkpoint {name!r}: {shown} resolves to {real}, outside the allowed roots: {allowed}")


def _pickle_message(name: str, path: Path) -> str:
    return (
        f"checkpoint {name!r}: {path} is a pickled checkpoint, refused: unpickling can run arbitrary code. "
        "Convert it to safetensors (e.g. model.save_pretrained(dir, safe_serialization=True) "
        "or safetensors.torch.save_file) and point the pool at that."
    )


def _refuse_pickle(name: str, path: Path) -> None:
    if path.suffix in PICKLE_SUFFIXES:
        raise PoolError(_pickle_message(name, path))


def _refuse_pickled_dir(name: str, path: Path) -> None:
    pickled = sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise PoolError(_pickle_message(name, pickled[0]))


def _read_index(name: str, index: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise PoolError(f"checkpoint {name!r}: cannot read the weight_map of {index} ({e!r})") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise PoolError(f"checkpoint {name!r}: {index} has an empty or malformed weight_map")
    for tensor, shard in weight_map.items():
        # Shard names are bare file names: an index must not point outside its directory.
        if not isinstance(shard, str) or Path(shard).name != shard or shard in (".", ".."):
            raise PoolError(f"checkpoint {name!r}: {index} maps tensor {tensor!r} to {shard!r}, not a file in the directory")
        if not shard.endswith(".safetensors"):
            if shard.endswith(PICKLE_SUFFIXES):
                raise PoolError(_pickle_message(name, index.parent / shard))
            raise PoolError(f"checkpoint {name!r}: {index} maps tensor {tensor!r} to {shard!r}, not a .safetensors file")
    return weight_map
