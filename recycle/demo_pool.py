"""The demo checkpoint pool: a small GPT-2 and its domain specialists, built offline.

The recipe follows the setting of Khalifa et al. (arXiv 2412.04144): checkpoints that
share an ancestor but were trained towards different goals. A byte-level BPE
tokenizer and a base model are trained on a mix of corpora that ship with Python
(see `recycle.corpora`); the base is then fine-tuned once per domain, on batches of
mostly that domain. Fine-tuning from the shared base keeps the checkpoints linearly
mode connected, so weighted averages of them are good models, and fine-tuning at
the base's peak learning rate makes each specialist clearly better on its domain
and worse on the others: the tradeoff a merge search can exploit.

Everything lands in `cache_dir`; a marker written last makes a finished build
reusable, keyed by scale, seed, Python version and this code.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import random
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from contracts import CheckpointRef, PoolSpec, TaskSpec
from recycle import corpora

EOS = "<|endoftext|>"
MARKER = "demo_pool.json"
BASE = "base"


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


def build_demo_pool(
    cache_dir: Path, scale: str = "demo", seed: int = 0, log: Callable[[str], object] = print
) -> DemoPool:
    """Build (or reuse from `cache_dir`) the demo pool and one lm_loss task per domain."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}, expected one of {', '.join(SCALES)}")
    cfg = SCALES[scale]
    cache_dir = Path(cache_dir).resolve()
    marker = cache_dir / MARKER
    key = {"scale": scale, "seed": seed, "python": platform.python_version(), "code": _code_version()}
    if marker.is_file() and (built := json.loads(marker.read_text())).get("key") == key:
        return _specs(cache_dir, scale, built["domains"])

    started = time.perf_counter()
    marker.unlink(missing_ok=True)
    for stale in ("pool", "tasks"):
        shutil.rmtree(cache_dir / stale, ignore_errors=True)
    (cache_dir / "tasks").mkdir(parents=True)

    with _quiet_and_few_threads():
        domains, losses = _build(cache_dir, scale, seed, log)
    seconds = round(time.perf_counter() - started, 1)
    built = {"key": key, "domains": domains, "scale": asdict(cfg), "seconds": seconds, "train_loss": losses}
    _write_json(marker, built)
    log(f"demo pool ({scale}) built in {seconds:.0f}s at {cache_dir}")
    return _specs(cache_dir, scale, domains)


def split_corpora(scale: str, seed: int) -> dict[str, tuple[list[str], list[str]]]:
    """Per domain, (training documents, evaluation documents) as the build uses them."""
    cfg = SCALES[scale]
    splits = {}
    for domain, sources in corpora.DOMAINS.items():
        documents = list(sources())
        if not documents and domain in corpora.OPTIONAL:
            continue
        train, evaluation = corpora.split_domain(
            domain,
            documents,
            n_eval=cfg.eval_docs,
            n_train=cfg.train_docs,
            max_chars=cfg.doc_chars,
            min_chars=cfg.doc_chars // 4,
            seed=seed,
        )
        # Shuffled so that the evaluator's first windows come from many sources.
        random.Random(f"{seed}:{domain}").shuffle(evaluation)
        splits[domain] = train, evaluation
    return splits


def _build(cache_dir: Path, scale: str, seed: int, log) -> tuple[list[str], dict[str, float]]:
    """Writes the task files and checkpoints; returns the domains and final training losses."""
    cfg = SCALES[scale]
    splits = split_corpora(scale, seed)
    for missing in sorted(corpora.DOMAINS.keys() - splits.keys()):
        log(f"corpus {missing}: not shipped with this Python, skipped")
    for domain, (train, evaluation) in splits.items():
        with (cache_dir / "tasks" / f"{domain}.jsonl").open("w", encoding="utf-8") as out:
            out.writelines(json.dumps({"text": text}) + "\n" for text in evaluation)
        log(f"corpus {domain}: {len(train)} train / {len(evaluation)} eval documents")

    tokenizer = _train_tokenizer([doc for train, _ in splits.values() for doc in train], cfg)
    streams = {domain: _token_stream(tokenizer, train) for domain, (train, _) in splits.items()}
    log(f"tokenizer: {len(tokenizer)} tokens; train tokens " + ", ".join(f"{d} {len(s)}" for d, s in streams.items()))

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(_model_config(cfg, tokenizer))
    losses = {BASE: _train(model, list(streams.values()), cfg.base_steps, cfg.base_lr, cfg, seed, log, BASE)}
    _save(model, tokenizer, cache_dir / "pool" / BASE)
    base_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}

    for number, (domain, stream) in enumerate(streams.items(), 1):
        model.load_state_dict(base_state)
        # Each batch also replays one window of every domain. Without it the specialists
        # mostly shift the token prior towards their domain, moves that cancel out in a
        # merge (measured: the uniform merge then lost to the base on the macro-average).
        rows = [stream] * (cfg.batch - len(streams)) + list(streams.values())
        losses[domain] = _train(model, rows, cfg.ft_steps, cfg.ft_lr, cfg, seed * 1000 + number, log, domain)
        _save(model, tokenizer, cache_dir / "pool" / domain)
    return list(splits), losses


def _train_tokenizer(docs: list[str], cfg: Scale) -> PreTrainedTokenizerFast:
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


def _token_stream(tokenizer, docs: list[str]) -> torch.Tensor:
    """All documents as one token sequence, each closed by EOS."""
    ids = tokenizer(docs, add_special_tokens=False)["input_ids"]
    return torch.tensor([token for doc in ids for token in doc + [tokenizer.eos_token_id]])


def _model_config(cfg: Scale, tokenizer) -> GPT2Config:
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


def _train(model, streams: list[torch.Tensor], steps: int, lr: float, cfg: Scale, seed: int, log, label: str) -> float:
    """AdamW, warm-up then cosine decay; batch row i is a random window of streams[i % len(streams)]."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(1.0, (step + 1) / warmup) * (0.55 + 0.45 * math.cos(math.pi * step / steps)),
    )
    model.train()
    started = time.perf_counter()
    smoothed = None
    for step in range(1, steps + 1):
        rows = []
        for row in range(cfg.batch):
            stream = streams[row % len(streams)]
            start = int(torch.randint(len(stream) - cfg.ctx, (1,), generator=generator))
            rows.append(stream[start : start + cfg.ctx])
        batch = torch.stack(rows)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        smoothed = loss.item() if smoothed is None else 0.9 * smoothed + 0.1 * loss.item()
        if step % max(1, steps // 5) == 0 or step == steps:
            log(f"{label}: step {step}/{steps} loss {smoothed:.3f} {time.perf_counter() - started:.1f}s")
    model.eval()
    return round(smoothed, 4)


def _save(model, tokenizer, directory: Path) -> None:
    model.save_pretrained(directory)  # config.json + model.safetensors
    tokenizer.save_pretrained(directory)
    for path in directory.iterdir():
        path.chmod(0o644)  # transformers writes weights 0600; workers may run as another user


def _specs(cache_dir: Path, scale: str, domains: list[str]) -> DemoPool:
    cfg = SCALES[scale]
    names = [BASE, *domains]
    pool = PoolSpec(
        name=f"demo-{scale}",
        checkpoints=tuple(CheckpointRef(name=name, path=str(cache_dir / "pool" / name)) for name in names),
    )
    tasks = [
        TaskSpec(
            name=domain,
            kind="lm_loss",
            path=str(cache_dir / "tasks" / f"{domain}.jsonl"),
            seq_len=cfg.ctx,
            max_items=cfg.max_items,
            batch_size=cfg.eval_batch,
        )
        for domain in domains
    ]
    return DemoPool(pool=pool, tasks=tasks)


@contextmanager
def _quiet_and_few_threads():
    """Tiny models train fastest on few threads, and a fixed count keeps runs
    reproducible; transformers' warnings and progress bars would drown the log."""
    threads, verbosity = torch.get_num_threads(), hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    torch.set_num_threads(min(threads, 2))
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _code_version() -> str:
    """Hash of the code that decides what gets built: an edit invalidates old caches."""
    digest = hashlib.sha256()
    for module in (__file__, corpora.__file__):
        digest.update(Path(module).read_bytes())
    return digest.hexdigest()[:16]


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)  # atomic: a marker is either complete or absent
