"""A pool of compatible checkpoints, opened once and kept mapped.

`CheckpointPool.open` checks everything before mapping anything: paths (existence,
allowed roots, no pickles, complete shard sets), then every header, then that all
checkpoints hold the same tensor names, shapes and dtypes. Only then are the files
mapped and tensor views built; a pool that opened is safe to merge.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import torch

from contracts.models import PoolSpec

from merger.errors import PoolError
from merger.locate import INDEX_FILE, Located, locate, resolve_roots
from merger.safetensors_mmap import DTYPE_NAMES, HeaderError, MappedFile, TensorInfo, read_header
from merger.segments import Layout, Segment, find_segments, segment_views, span


class CheckpointPool:
    def __init__(
        self,
        spec: PoolSpec,
        located: list[Located],
        infos: dict[str, TensorInfo],
        tensors: list[dict[str, torch.Tensor]],
        files: list[MappedFile],
        device: torch.device,
        segments: list[Segment] = (),
        segment_tensors: list[list[torch.Tensor]] = (),
    ):
        # Use CheckpointPool.open(); this constructor trusts its arguments.
        self.spec = spec
        self.names: list[str] = [loc.name for loc in located]
        self.paths: list[Path] = [loc.path for loc in located]
        self.tensor_names: list[str] = sorted(infos)
        self.config_dir: Path | None = next((loc.config_dir for loc in located if loc.config_dir), None)
        self.device = device
        self._located = located
        self._infos = infos
        self._shapes = {name: torch.Size(info.shape) for name, info in infos.items()}
        self._tensors: list[dict[str, torch.Tensor]] | None = tensors
        self._files = files
        # Runs of tensors stored back to back in every checkpoint (see merger.segments), and
        # per checkpoint one flat view over each run.
        self.segments: list[Segment] = list(segments)
        self._segment_tensors = list(segment_tensors)

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(cls, spec: PoolSpec, allowed_roots: Sequence[str | Path] | None = None) -> "CheckpointPool":
        roots = resolve_roots(allowed_roots)
        located = [locate(ref, roots) for ref in spec.checkpoints]
        layouts = [_read_layout(loc) for loc in located]
        _check_compatible(located, layouts)

        segments = find_segments(layouts)
        files: list[MappedFile] = []
        tensors: list[dict[str, torch.Tensor]] = []
        segment_tensors: list[list[torch.Tensor]] = []
        try:
            for layout in layouts:
                mapped = {path: MappedFile(path) for path in sorted({path for path, _ in layout.values()})}
                files.extend(mapped.values())
                tensors.append({name: mapped[path].tensor(info) for name, (path, info) in layout.items()})
                spans = [span(layout, segment) for segment in segments]
                segment_tensors.append([mapped[path].tensor(info) for path, info in spans])
        except BaseException:
            for f in files:
                f.close()
            raise
        infos = {name: info for name, (_, info) in layouts[0].items()}
        return cls(spec, located, infos, tensors, files, torch.device("cpu"), segments, segment_tensors)

    # -- what the pool holds -------------------------------------------------------

    def __len__(self) -> int:
        return len(self.names)

    def shape(self, name: str) -> torch.Size:
        self._info(name)  # unknown names get a clear KeyError
        return self._shapes[name]

    def dtype(self, name: str) -> torch.dtype:
        return self._info(name).dtype

    def tensor(self, index: int, name: str) -> torch.Tensor:
        """Checkpoint `index`'s tensor `name`: a read-only view, never a copy. Do not write to it."""
        if self._tensors is None:
            raise PoolError(f"pool {self.spec.name!r} is closed")
        return self._tensors[index][name]

    def segment(self, index: int, number: int) -> torch.Tensor:
        """Checkpoint `index`'s tensors of `self.segments[number]` as one flat read-only view."""
        if self._tensors is None:
            raise PoolError(f"pool {self.spec.name!r} is closed")
        return self._segment_tensors[index][number]

    @property
    def nbytes(self) -> int:
        """Bytes of one checkpoint's tensors (what one merged model takes)."""
        return sum(info.nbytes for info in self._infos.values())

    @property
    def float_dtype(self) -> torch.dtype | None:
        """The floating dtype holding most bytes (the model's dtype), None if there is none."""
        sizes: Counter[torch.dtype] = Counter()
        for info in self._infos.values():
            if info.dtype.is_floating_point:
                sizes[info.dtype] += info.nbytes
        return sizes.most_common(1)[0][0] if sizes else None

    def _info(self, name: str) -> TensorInfo:
        try:
            return self._infos[name]
        except KeyError:
            raise KeyError(f"pool {self.spec.name!r} has no tensor {name!r}") from None

    # -- placement and lifetime ----------------------------------------------------

    def to_device(self, device: str | torch.device) -> "CheckpointPool":
        """A pool whose tensors live on `device` (a copy of every checkpoint there).

        For GPU workers when the whole pool fits: merges then read device memory only.
        On the CPU the mapped pool already is resident (page cache), so this is self.
        """
        device = torch.device(device)
        if device.type == "cpu":
            return self
        if self._tensors is None:
            raise PoolError(f"pool {self.spec.name!r} is closed")
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            need = len(self) * self.nbytes
            if need > free:
                raise PoolError(
                    f"pool {self.spec.name!r} needs {need / 2**30:.1f} GiB on {device}, only {free / 2**30:.1f} GiB free: "
                    "merge from the CPU pool instead"
                )
        moved, moved_segments = [], []
        for tensors, flats in zip(self._tensors, self._segment_tensors):
            # Segments move as one copy each; their tensors become views of it.
            flats = [flat.to(device) for flat in flats]
            views = {}
            for segment, flat in zip(self.segments, flats):
                views.update(segment_views(flat, segment, self._shapes))
            moved.append({name: views[name] if name in views else t.to(device) for name, t in tensors.items()})
            moved_segments.append(flats)
        return CheckpointPool(self.spec, self._located, self._infos, moved, [], device, self.segments, moved_segments)

    def close(self) -> None:
        """Drop the views and unmap the files (views still held elsewhere keep theirs mapped)."""
        self._tensors = None
        self._segment_tensors = []
        for f in self._files:
            f.close()
        self._files = []

    def __enter__(self) -> "CheckpointPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"CheckpointPool({self.spec.name!r}, {len(self)} checkpoints, {len(self.tensor_names)} tensors, "
            f"{self.nbytes / 2**20:.1f} MiB each, {self.device})"
        )


def _read_layout(loc: Located) -> Layout:
    layout: Layout = {}
    for path in loc.files:
        try:
            infos, _ = read_header(path)
        except HeaderError as e:
            raise PoolError(f"checkpoint {loc.name!r}: {path}: {e}") from None
        except OSError as e:
            raise PoolError(f"checkpoint {loc.name!r}: cannot read {path}: {e}") from None
        for name, info in infos.items():
            if name in layout:
                raise PoolError(f"checkpoint {loc.name!r}: tensor {name!r} is in both {layout[name][0].name} and {path.name}")
            if loc.weight_map is not None and loc.weight_map.get(name) != path.name:
                raise PoolError(
                    f"checkpoint {loc.name!r}: {path.name} holds tensor {name!r}, "
                    f"but {INDEX_FILE} places it in {loc.weight_map.get(name)!r}"
                )
            layout[name] = (path, info)
    if loc.weight_map is not None:
        absent = sorted(set(loc.weight_map) - set(layout))
        if absent:
            raise PoolError(
                f"checkpoint {loc.name!r}: tensor {absent[0]!r} is listed in {INDEX_FILE} "
                f"but missing from {loc.weight_map[absent[0]]}"
            )
    if not layout:
        raise PoolError(f"checkpoint {loc.name!r}: {loc.path} holds no tensors")
    return layout


def _check_compatible(located: list[Located], layouts: list[Layout]) -> None:
    """Every checkpoint must match the first: same names, shapes and dtypes."""
    first, reference = located[0].name, layouts[0]
    for loc, layout in zip(located[1:], layouts[1:]):
        missing = sorted(set(reference) - set(layout))
        if missing:
            raise PoolError(
                f"checkpoint {loc.name!r} lacks tensor {missing[0]!r} that {first!r} has "
                f"({len(missing)} missing in all)"
            )
        extra = sorted(set(layout) - set(reference))
        if extra:
            raise PoolError(
                f"checkpoint {loc.name!r} has tensor {extra[0]!r} that {first!r} lacks ({len(extra)} extra in all)"
            )
        for name in sorted(reference):
            want, got = reference[name][1], layout[name][1]
            if got.shape != want.shape:
                raise PoolError(
                    f"checkpoint {loc.name!r}: tensor {name!r} has shape {list(got.shape)}, "
                    f"expected {list(want.shape)} as in {first!r}"
                )
            if got.dtype != want.dtype:
                raise PoolError(
                    f"checkpoint {loc.name!r}: tensor {name!r} has dtype {DTYPE_NAMES[got.dtype]}, "
                    f"expected {DTYPE_NAMES[want.dtype]} as in {first!r}"
                )

