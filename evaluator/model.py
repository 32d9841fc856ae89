"""A model built once per worker whose weights are overwritten in place per trial.

Building a transformers model costs far more than merging into it, so the
worker keeps one alive and the merger writes straight into its parameters:
no re-construction, no state-dict copies, no disk writes per trial.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from merger import CheckpointPool, PoolError
from merger.fused import HALF_DTYPES
from merger.segments import flat_view, segment_views


def cpu_runs_natively(dtype: torch.dtype) -> bool:
    """Whether this CPU has matrix instructions for `dtype` (AVX512-BF16 or AMX).

    Without them torch emulates half-precision matmuls: measured 37x slower than fp32
    on an AVX2-only AMD EPYC (0.9 vs 33.5 GFLOPS), 3x faster with AMX on an Intel Xeon.
    """
    if dtype == torch.bfloat16:
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    if dtype == torch.float16:
        return bool(getattr(torch.cpu, "_is_amx_fp16_supported", lambda: False)())
    return True


def compute_dtype(pool_dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """What a model of a `pool_dtype` pool runs in: the pool's own dtype, except for half
    precision on a CPU that would emulate it (fp32 then: the merge writes fp32 outputs)."""
    if device.type == "cpu" and pool_dtype in HALF_DTYPES and not cpu_runs_natively(pool_dtype):
        return torch.float32
    return pool_dtype


class ResidentModel:
    def __init__(self, pool: CheckpointPool, device: str = "cpu", dtype: torch.dtype | None = None):
        if pool.config_dir is None:
            raise PoolError("the pool has no config.json: the evaluator needs an HF-style checkpoint directory")
        config = AutoConfig.from_pretrained(pool.config_dir)
        float_dtypes = {pool.dtype(n) for n in pool.tensor_names if pool.dtype(n).is_floating_point}
        self.device = torch.device(device)
        pool_dtype = float_dtypes.pop() if len(float_dtypes) == 1 else torch.float32
        self.dtype = dtype or compute_dtype(pool_dtype, self.device)
        self.model = AutoModelForCausalLM.from_config(config, dtype=self.dtype).to(self.device).eval()
        self.max_positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 1024)
        self.targets = self._bind(pool)
        self._lay_out_like(pool)

    def _bind(self, pool: CheckpointPool) -> dict[str, torch.Tensor]:
        """Map every pool tensor to the model tensor it overwrites; check nothing is left random."""
        state = self.model.state_dict()
        targets = {}
        for name in pool.tensor_names:
            if name not in state:
                raise PoolError(f"checkpoint tensor {name!r} is not a tensor of the model built from config.json")
            if tuple(state[name].shape) != tuple(pool.shape(name)):
                raise PoolError(
                    f"tensor {name!r} has shape {tuple(pool.shape(name))} in the pool but "
                    f"{tuple(state[name].shape)} in the model built from config.json"
                )
            targets[name] = state[name]
        # Model tensors absent from the files must be tied to one that is (e.g. lm_head to wte).
        covered = {t.data_ptr() for t in targets.values()}
        missing = [n for n, t in state.items() if n not in targets and t.data_ptr() not in covered]
        if missing:
            raise PoolError(f"the checkpoints lack model tensors (first: {missing[0]!r})")
        return targets

    def _lay_out_like(self, pool: CheckpointPool) -> None:
        """Move the parameters of each pool segment into one buffer, in the pool's order, so a
        merge fills each segment with one kernel call (merger.segments) instead of one per tensor."""
        tensors = dict(self.model.named_parameters(remove_duplicate=False))
        tensors.update(self.model.named_buffers(remove_duplicate=False))
        for segment in pool.segments:
            first = self.targets[segment.names[0]]
            if any(name not in tensors or self.targets[name].dtype != first.dtype for name in segment.names):
                continue
            buffer = torch.empty(segment.numel, dtype=first.dtype, device=first.device)
            shapes = {name: self.targets[name].shape for name in segment.names}
            for name, view in segment_views(buffer, segment, shapes).items():
                view.copy_(self.targets[name])
                tensors[name].data = view  # tied parameters are one Parameter: both follow
                self.targets[name] = view
            assert flat_view(self.targets, segment) is not None
