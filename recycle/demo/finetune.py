"""What both demo pools share: corpora to token streams, a fine-tuning loop, saving, build caches.

A demo pool is a base model plus one specialist per corpus domain, each fine-tuned
from the base on batches of mostly its own domain. The pool builders
(`recycle.demo.tiny_pool` for the tiny GPT-2, `recycle.demo.smollm2_pool` for SmolLM2-135M)
differ in the model and the recipe, not in how they train, save or cache.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from recycle.demo import corpora

MARKER = "demo_pool.json"
BASE = "base"
# Told of every training step (label, step, steps, smoothed loss): the CLI's progress bars.
# The log lines come only every steps/5, minutes apart on a busy machine.
step_watcher: ContextVar[Callable[[str, int, int, float], object] | None] = ContextVar("step_watcher", default=None)


def split_corpora(*, train_docs: int, eval_docs: int, doc_chars: int, seed: int,
                  eval_per_source: int | None = None) -> dict[str, tuple[list[str], list[corpora.Source]]]:
    """Per domain, (training documents, evaluation documents as (source id, text)); domains
    missing here are left out."""
    splits = {}
    for domain, sources in corpora.DOMAINS.items():
        documents = list(sources())
        if not documents and domain in corpora.OPTIONAL:
            continue
        train, evaluation = corpora.split_domain(
            domain, documents, n_eval=eval_docs, n_train=train_docs, max_chars=doc_chars, min_chars=doc_chars // 4, seed=seed,
            eval_per_source=eval_per_source,
        )
        # Shuffled so that the evaluator's first windows come from many sources.
        random.Random(f"{seed}:{domain}").shuffle(evaluation)
        splits[domain] = train, evaluation
    return splits


def write_task_files(task_dir: Path, splits: dict[str, tuple[list[str], list[corpora.Source]]], log) -> None:
    """One JSONL file of evaluation documents per domain, each with its source as its group (the
    evaluator splits by group into search/report, so no source straddles the two)."""
    task_dir.mkdir(parents=True, exist_ok=True)
    for missing in sorted(corpora.DOMAINS.keys() - splits.keys()):
        log(f"corpus {missing}: not shipped with this Python, skipped")
    for domain, (train, evaluation) in splits.items():
        with (task_dir / f"{domain}.jsonl").open("w", encoding="utf-8") as out:
            out.writelines(json.dumps({"text": text, "group": f"{domain}:{source}"}) + "\n" for source, text in evaluation)
        log(f"corpus {domain}: {len(train)} train / {len(evaluation)} eval documents")


def token_stream(tokenizer, docs: list[str]) -> torch.Tensor:
    """All documents as one token sequence, each closed by EOS."""
    ids = tokenizer(docs, add_special_tokens=False)["input_ids"]
    return torch.tensor([token for doc in ids for token in doc + [tokenizer.eos_token_id]])


def specialist_rows(own: torch.Tensor, streams: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
    """Batch rows for one specialist: mostly its own domain, plus one window of every domain.

    The replayed windows matter: without them specialists mostly shift the token
    prior towards their domain, moves that cancel out in a merge (measured on the
    tiny pool: the uniform merge then lost to the base on the macro-average).
    """
    return [own] * (batch - len(streams)) + list(streams)


def train(
    model,
    streams: list[torch.Tensor],
    *,
    steps: int,
    lr: float,
    batch: int,
    ctx: int,
    seed: int,
    log: Callable[[str], object],
    label: str,
    parameters: Iterable[torch.nn.Parameter] | None = None,
    bf16_autocast: bool = False,
    after_step: Callable[[int], object] | None = None,
) -> float:
    """AdamW, warm-up then cosine decay to 55%; batch row i is a random window of streams[i % len(streams)].

    Returns the smoothed final training loss. `parameters` (default: all) are the
    ones trained; `bf16_autocast` runs matmuls in bf16 (fp32 master weights), which
    CPUs with AMX or AVX512-BF16 do several times faster. `after_step(step)` runs after each
    step (e.g. to save a stage of the run).
    """
    parameters = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(parameters, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * (0.55 + 0.45 * math.cos(math.pi * step / steps))
    )
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16_autocast else nullcontext()
    model.train()
    started = time.perf_counter()
    smoothed = None
    watch = step_watcher.get()
    for step in range(1, steps + 1):
        rows = []
        for row in range(batch):
            stream = streams[row % len(streams)]
            start = int(torch.randint(len(stream) - ctx, (1,), generator=generator))
            rows.append(stream[start : start + ctx])
        ids = torch.stack(rows)
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        smoothed = loss.item() if smoothed is None else 0.9 * smoothed + 0.1 * loss.item()
        if watch:
            watch(label, step, steps, smoothed)
        if after_step is not None:
            after_step(step)
        if step % max(1, steps // 5) == 0 or step == steps:
            log(f"{label}: step {step}/{steps} loss {smoothed:.3f} {time.perf_counter() - started:.1f}s")
    model.eval()
    return round(smoothed, 4)


def save_checkpoint(model, tokenizer, directory: Path, dtype: torch.dtype | None = None) -> None:
    """An HF directory (config.json, model.safetensors, tokenizer), optionally cast to `dtype`."""
    if dtype is not None and dtype != next(model.parameters()).dtype:
        model = copy.deepcopy(model).to(dtype)  # a copy keeps tied weights tied (saved once)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    for path in directory.iterdir():
        path.chmod(0o644)  # transformers writes weights 0600; workers may run as another user


def code_digest(*files: str) -> str:
    """Hash of the code that decides what a build makes (this module and the corpora included)."""
    digest = hashlib.sha256()
    for module in (__file__, corpora.__file__, *files):
        digest.update(Path(module).read_bytes())
    return digest.hexdigest()[:16]


class BuildCache:
    """A folder whose build is reused while its key (recipe, seed, Python, code) is unchanged.

    The marker is written last and atomically: a build that died half-way is redone. One
    process builds a folder at a time (a file lock): a second (another `recycle demo`, a
    benchmark) waits, then reuses the build instead of deleting it half-way.
    """

    def __init__(self, folder: Path, key: dict):
        self.folder = Path(folder).resolve()
        self.marker = self.folder / MARKER
        self.key = key

    def finished(self) -> dict | None:
        if self.marker.is_file() and (built := json.loads(self.marker.read_text())).get("key") == self.key:
            return built
        return None

    @contextmanager
    def locked(self, log: Callable[[str], object]):
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".build.lock", "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log(f"another process is building {self.folder}: waiting for it")
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def start(self, subfolders: Iterable[str]) -> None:
        import shutil

        self.marker.unlink(missing_ok=True)
        for stale in subfolders:
            shutil.rmtree(self.folder / stale, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)

    def finish(self, payload: dict) -> dict:
        built = {"key": self.key, **payload}
        tmp = self.marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(built, indent=2) + "\n")
        tmp.replace(self.marker)  # atomic: a marker is either complete or absent
        return built


def build_once(
    cache: BuildCache, build: Callable[[], tuple[list[str], dict[str, float]]], *, threads: int, recipe: dict,
    label: str, log: Callable[[str], object],
) -> list[str]:
    """The pool's domains: from the finished build in `cache`, or from `build()` (-> domains,
    final training losses) run now with `threads` torch threads."""
    with cache.locked(log):
        if built := cache.finished():
            return built["domains"]
        started = time.perf_counter()
        cache.start(["pool", "tasks"])
        with quiet_and_threads(threads):
            domains, losses = build()
        seconds = round(time.perf_counter() - started, 1)
        cache.finish({"domains": domains, "recipe": recipe, "seconds": seconds, "train_loss": losses})
        log(f"{label} built in {seconds:.0f}s at {cache.folder}")
        return domains


@contextmanager
def quiet_and_threads(threads: int):
    """A fixed thread count keeps builds reproducible; transformers' warnings and
    progress bars would drown the log."""
    before, verbosity = torch.get_num_threads(), hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    torch.set_num_threads(threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        torch.set_num_threads(before)
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
