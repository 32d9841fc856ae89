"""The demo pools `recycle demo --pool` offers, and how a demo searches each.

Kept free of torch and transformers imports (the CLI reads it for --help); each pool's
builder is imported when that pool is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path


@dataclass(frozen=True)
class DemoPoolKind:
    builder: str  # "module:function(cache_dir, seed=..., log=...) -> DemoPool"
    folder: str  # under the pool cache
    budget: int  # trials per search
    # Each checkpoint moved 10% towards the uniform soup as extra baselines (SearchOptions.shrunk_singles):
    # for specialist pools, where a small move can beat a specialist on every task; a pool of
    # generalists gains nothing from 17 such trials out of 64.
    shrunk_singles: float
    help: str


DEMO_POOLS = {
    "recycling": DemoPoolKind(
        "recycle.demo.recycling_pool:build_recycling_pool", "recycling", 64, 0.0,
        "16 generalist checkpoints of a 4-layer GPT-2 (4 data mixtures x 2 learning rates x 2 stages) and their base,"
        " trained here once; objectives: python, prose (lm_loss), next-line questions on C (multiple choice);"
        " decimal left out (generalization)"),
    "tiny": DemoPoolKind(
        "recycle.demo.tiny_pool:build_demo_pool", "demo", 48, 0.1,
        "a 4-layer GPT-2 and one specialist per domain (minutes)"),
    "smollm2": DemoPoolKind(
        "recycle.demo.smollm2_pool:build_smollm2_pool", "smollm2", 64, 0.1,
        "SmolLM2-135M-Instruct and 8 specialists fine-tuned here, 2 runs per domain (built once: ~20-30 min on 2 cores"
        " with native bf16, ~110 min in fp32 on an AVX2-only CPU)"),
}
DEFAULT_POOL = "recycling"


def build_demo(name: str, cache_root: Path, seed: int, log):
    """The DemoPool `name`, built once per seed into `cache_root`."""
    kind = DEMO_POOLS[name]
    module, function = kind.builder.split(":")
    folder = cache_root / (kind.folder if seed == 0 else f"{kind.folder}-seed{seed}")
    return getattr(import_module(module), function)(folder, seed=seed, log=log)
