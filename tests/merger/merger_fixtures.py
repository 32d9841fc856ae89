"""Helpers that build tiny real checkpoints: GPT-2s saved by transformers, raw safetensors files.

(A uniquely named module, not a package: tests/ has no __init__.py and `merger` is taken.)
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file

from contracts.models import CheckpointRef, PoolSpec

transformers.logging.set_verbosity_error()

GPT2 = dict(n_layer=2, n_embd=32, n_head=2, vocab_size=300, n_positions=64, bos_token_id=0, eos_token_id=0)


def gpt2_config() -> transformers.GPT2Config:
    return transformers.GPT2Config(**GPT2)


def save_gpt2(path: Path, seed: int, dtype: torch.dtype = torch.float32, **save_kwargs) -> Path:
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(gpt2_config()).to(dtype)
    model.save_pretrained(path, **save_kwargs)
    return path


def save_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(["merge the checkpoints, then evaluate the merge"] * 10, trainer=trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    fast.save_pretrained(path)


def spec_of(paths, names=None, pool_name: str = "pool") -> PoolSpec:
    names = names or [f"c{i}" for i in range(len(paths))]
    return PoolSpec(name=pool_name, checkpoints=tuple(CheckpointRef(name=n, path=str(p)) for n, p in zip(names, paths)))


def save_raw(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def merged(pool, spec, weights) -> dict:
    """One in-place merge of `pool` under `spec`, the outputs copied out (name -> tensor)."""
    from merger import allocate_outputs, make_method

    out = allocate_outputs(pool)
    make_method(pool, spec).merge_into(weights, out)
    return {name: t.clone() for name, t in out.items()}
