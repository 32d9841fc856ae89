"""The demo checkpoint pool: a small GPT-2 and its domain specialists, built offline.

The recipe follows the setting of Khalifa et al. (arXiv 2412.04144): checkpoints that
share an ancestor but were trained towards different goals. A byte-level BPE
tokenizer and a base model are trained on a mix of corpora that ship with Python
(see `recycle.demo.corpora`); the base is then fine-tuned once per domain, on batches of
mostly that domain. Fine-tuning from the shared base keeps the checkpoints linearly
mode connected, so weighted averages of them are good models, and fine-tuning at
the base's peak learning rate makes each specialist clearly better on its domain
and worse on the others: the tradeoff a merge search can exploit.

Everything lands in `cache_dir`; a marker written last makes a finished build
reusable, keyed by scale, seed, Python version and this code.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from contracts import CheckpointRef, PoolSpec, TaskSpec
from recycle.demo.finetune import (
    BASE,
    BuildCache,
    build_once,
    code_digest,
    save_checkpoint,
    specialist_rows,
    split_corpora,
    token_stream,
    train,
    write_task_files,
)

EOS = "<|endoftext|>"


@dataclass(frozen=True)
class Scale:
    train_docs: int  # per domain
    eval_docs: int  # per domain; the evaluator splits them into search and report
    doc_chars: int
    vocab: int
    n_layer: int
    n_embd: int
    n_head: int
    ctx: int  # also each task's window length
    batch: int
    base_steps: int
    base_lr: float
    ft_steps: int
    ft_lr: float
    max_items: int  # windows per split and task: the evaluation cost of every trial
    eval_batch: int


SCALES = {
    "test": Scale(
        train_docs=40, eval_docs=24, doc_chars=800, vocab=384, n_layer=2, n_embd=64, n_head=2, ctx=64,
        batch=8, base_steps=60, base_lr=3e-3, ft_steps=40, ft_lr=3e-3, max_items=8, eval_batch=8,
    ),
    "demo": Scale(
        train_docs=800, eval_docs=96, doc_chars=1000, vocab=2048, n_layer=4, n_embd=128, n_head=4, ctx=128,
        batch=16, base_steps=400, base_lr=2e-3, ft_steps=120, ft_lr=2e-3, max_items=24, eval_batch=24,
    ),
}


@dataclass(frozen=True)
class DemoPool:
    pool: PoolSpec
    tasks: list[TaskSpec]
    left_out_tasks: list[TaskSpec] = field(default_factory=list)  # scored by the verdict only


def build_demo_pool(
    cache_dir: Path, scale: str = "demo", seed: int = 0, log: Callable[[str], object] = print
) -> DemoPool:
    """Build (or reuse from `cache_dir`) the demo pool and one lm_loss task per domain."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}, expected one of {', '.join(SCALES)}")
    cfg = SCALES[scale]
    # Cheap to rebuild: any edit of the code that builds it invalidates the cache.
    key = {"scale": scale, "seed": seed, "python": platform.python_version(), "code": code_digest(__file__)}
    cache = BuildCache(cache_dir, key)
    domains = build_once(
        cache, lambda: _build(cache.folder, scale, seed, log), threads=min(torch.get_num_threads(), 2),  # tiny
        recipe=asdict(cfg), label=f"demo pool ({scale})", log=log,  # models train fastest on few threads
    )
    return _specs(cache.folder, scale, domains)


def demo_splits(scale: str, seed: int) -> dict[str, tuple[list[str], list[str]]]:
    """Per domain, (training documents, evaluation documents) as the build uses them."""
    cfg = SCALES[scale]
    return split_corpora(train_docs=cfg.train_docs, eval_docs=cfg.eval_docs, doc_chars=cfg.doc_chars, seed=seed)


def _build(cache_dir: Path, scale: str, seed: int, log) -> tuple[list[str], dict[str, float]]:
    """Writes the task files and checkpoints; returns the domains and final training losses."""
    cfg = SCALES[scale]
    splits = demo_splits(scale, seed)
    write_task_files(cache_dir / "tasks", splits, log)

    tokenizer = train_tokenizer([doc for train_docs, _ in splits.values() for doc in train_docs], cfg)
    streams = {domain: token_stream(tokenizer, train_docs) for domain, (train_docs, _) in splits.items()}
    log(f"tokenizer: {len(tokenizer)} tokens; train tokens " + ", ".join(f"{d} {len(s)}" for d, s in streams.items()))

    def run(model, rows, steps, lr, run_seed, label):
        return train(model, rows, steps=steps, lr=lr, batch=cfg.batch, ctx=cfg.ctx, seed=run_seed, log=log, label=label)

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(model_config(cfg, tokenizer))
    losses = {BASE: run(model, list(streams.values()), cfg.base_steps, cfg.base_lr, seed, BASE)}
    save_checkpoint(model, tokenizer, cache_dir / "pool" / BASE)
    base_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}

    for number, (domain, stream) in enumerate(streams.items(), 1):
        model.load_state_dict(base_state)
        rows = specialist_rows(stream, list(streams.values()), cfg.batch)
        losses[domain] = run(model, rows, cfg.ft_steps, cfg.ft_lr, seed * 1000 + number, domain)
        save_checkpoint(model, tokenizer, cache_dir / "pool" / domain)
    return list(splits), losses


def train_tokenizer(docs: list[str], cfg: Scale) -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # any text stays encodable
        show_progress=False,
    )
    bpe.train_from_iterator(docs, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, bos_token=EOS, pad_token=EOS)


def model_config(cfg: Scale, tokenizer) -> GPT2Config:
    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=cfg.ctx,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        # No dropout: runs this short underfit, and dropout only slows them down.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
        attn_implementation="eager",  # SDPA's backward is several times slower on CPU
    )


def _specs(cache_dir: Path, scale: str, domains: list[str]) -> DemoPool:
    cfg = SCALES[scale]
    return pool_and_tasks(
        cache_dir, f"demo-{scale}", domains, seq_len=cfg.ctx, max_items=cfg.max_items, batch_size=cfg.eval_batch
    )


def pool_and_tasks(
    cache_dir: Path, name: str, domains: list[str], *, seq_len: int, max_items: int, batch_size: int,
    report_max_items: int | None = None, specialists: list[str] | None = None,
) -> DemoPool:
    """The PoolSpec (base + the specialists: by default one per domain, named by it) and one
    lm_loss task per domain of a built pool."""
    names = [BASE, *(specialists or domains)]
    pool = PoolSpec(
        name=name, checkpoints=tuple(CheckpointRef(name=n, path=str(cache_dir / "pool" / n)) for n in names)
    )
    tasks = [
        TaskSpec(
            name=domain,
            kind="lm_loss",
            path=str(cache_dir / "tasks" / f"{domain}.jsonl"),
            seq_len=seq_len,
            max_items=max_items,
            report_max_items=report_max_items,
            batch_size=batch_size,
        )
        for domain in domains
    ]
    return DemoPool(pool=pool, tasks=tasks)
