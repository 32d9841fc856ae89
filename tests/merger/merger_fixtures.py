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


def assert_mergekit_reproduces(cases: dict, tmp_path) -> None:
    """Each case (name -> (checkpoint dirs, MergeSpec, weights)) exported by recycle, its
    mergekit.yaml run by mergekit 0.1.5 (one process for all), the tensors equal bit for bit."""
    import torch
    from mergekit_reference import run_mergekit
    from safetensors.torch import load_file

    from merger import CheckpointPool, export_merge

    jobs = []
    for name, (dirs, spec, weights) in cases.items():
        with CheckpointPool.open(spec_of(dirs)) as pool:
            exported = export_merge(pool, spec, weights, tmp_path / name)
        jobs.append({"config": str(exported / "mergekit.yaml"), "out": str(tmp_path / f"{name}-mergekit")})
    run_mergekit(jobs, tmp_path)
    for name in cases:
        a = load_file(str(tmp_path / name / "model.safetensors"))
        b = load_file(str(tmp_path / f"{name}-mergekit" / "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def assert_merged_per_group(pool, out: dict, group_of: dict, per_group: list) -> None:
    """Every tensor of a grouped merge `out` is bit for bit the whole-model merge with its group's
    weights (per_group[g]), and, floating ones, that weighted sum computed in float64."""
    import torch

    from contracts import MergeSpec

    each = [merged(pool, MergeSpec(), w) for w in per_group]  # each group's weights, everywhere
    for name in pool.tensor_names:
        assert torch.equal(out[name], each[group_of[name]][name]), name
        if pool.dtype(name).is_floating_point:
            want = sum(c * pool.tensor(i, name).double() for i, c in enumerate(per_group[group_of[name]]))
            torch.testing.assert_close(out[name].double(), want, rtol=1e-6, atol=1e-6)
