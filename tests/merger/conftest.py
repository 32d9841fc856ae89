"""Session fixtures for the merger tests: tiny real checkpoints, built once (a few hundred KB each)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from merger_fixtures import save_gpt2, save_raw, save_tokenizer, spec_of


@pytest.fixture(scope="session")
def gpt2_dirs(tmp_path_factory) -> list[Path]:
    """Three fp32 GPT-2 checkpoints (HF dirs); the first also holds a tokenizer."""
    root = tmp_path_factory.mktemp("gpt2")
    dirs = [save_gpt2(root / f"ckpt{i}", seed=i) for i in range(3)]
    save_tokenizer(dirs[0])
    return dirs


@pytest.fixture(scope="session")
def gpt2_sharded_dirs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("gpt2-sharded")
    return [save_gpt2(root / f"ckpt{i}", seed=10 + i, max_shard_size="20KB") for i in range(3)]


@pytest.fixture(scope="session")
def gpt2_bf16_dirs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("gpt2-bf16")
    return [save_gpt2(root / f"ckpt{i}", seed=20 + i, dtype=torch.bfloat16) for i in range(4)]


@pytest.fixture(scope="session")
def raw_files(tmp_path_factory) -> list[Path]:
    """Four single .safetensors files with float, integer and bool tensors."""
    root = tmp_path_factory.mktemp("raw")
    files = []
    for i in range(4):
        g = torch.Generator().manual_seed(100 + i)
        files.append(
            save_raw(
                root / f"m{i}.safetensors",
                {
                    "w": torch.randn(64, 48, generator=g),
                    "b": torch.randn(48, generator=g),
                    "half": torch.randn(33, generator=g).half(),
                    "scalar": torch.randn((), generator=g),
                    "steps": torch.arange(5, dtype=torch.int64) + i,
                    "mask": torch.tensor([True, False, i % 2 == 0]),
                },
            )
        )
    return files


@pytest.fixture
def gpt2_pool(gpt2_dirs):
    """The GPT-2 checkpoints of gpt2_dirs, opened as one pool."""
    from merger import CheckpointPool

    with CheckpointPool.open(spec_of(gpt2_dirs)) as pool:
        yield pool
