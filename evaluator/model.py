"""A model built once per worker whose weights are overwritten in place per trial.

Building a transformers model costs far more than merging into it, so the
worker keeps one alive and the merger writes straight into its parameters:
no re-construction, no state-dict copies, no disk writes per trial.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from merger import CheckpointPool, PoolError


class ResidentModel:
    def __init__(self, pool: CheckpointPool, device: str = "cpu", dtype: torch.dtype | None = None):
        if pool.config_dir is None:
            raise PoolError("the pool has no config.json: the evaluator needs an HF-style checkpoint directory")
        config = AutoConfig.from_pretrained(pool.config_dir)
        float_dtypes = {pool.dtype(n) for n in pool.tensor_names if pool.dtype(n).is_floating_point}
        self.dtype = dtype or (float_dtypes.pop() if len(float_dtypes) == 1 else torch.float32)
        self.device = torch.device(device)
        self.model = AutoModelForCausalLM.from_config(config, dtype=self.dtype).to(self.device).eval()
        self.max_positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 1024)
        self.targets = self._bind(pool)

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
