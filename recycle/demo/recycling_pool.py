"""The recycling pool: many generalist checkpoints of one small model, as a lab's discarded runs.

Khalifa et al. (arXiv 2412.04144) recycle ~16 checkpoints of different training runs
(data mixtures, learning rates, stages), all generalists with different tradeoffs, not
one specialist per task. This pool is built the same way, offline and in minutes: a
byte-level BPE tokenizer and a 4-layer GPT-2 base trained on a mix of the Python corpora
(`recycle.demo.corpora`); then one run per (data mixture x learning rate), each starting
from the base, its batches weighted towards one domain but holding every domain; each
run is saved at two stages. 4 mixtures x 2 learning rates x 2 stages = 16 checkpoints,
plus the base.

Objectives: python and prose (lm_loss) and a multiple-choice task built from the C
sources (`recycle.demo.questions.word_swap_questions`: which line comes next, the true
one or one with two words exchanged), so a search mixes units.
The decimal domain is trained on but left out of the fitness (SearchSpec.left_out_tasks):
the verdict reports it as generalization. Every task row carries its source as its
group, so no source straddles the search and held-out splits.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from transformers import GPT2LMHeadModel

from contracts import CheckpointRef, PoolSpec, TaskSpec
from recycle.demo.finetune import BASE, BuildCache, build_once, code_digest, save_checkpoint, split_corpora, token_stream, train
from recycle.demo import questions, tiny_pool
from recycle.demo.questions import word_swap_questions
from recycle.demo.tiny_pool import SCALES, DemoPool, Scale, model_config, train_tokenizer

OBJECTIVE_LM = ("python", "prose")
OBJECTIVE_MC = "c"  # its documents become next-line questions
LEFT_OUT = "decimal"  # trained on, never searched on: absent where Python ships no test suite


@dataclass(frozen=True)
class Recipe:
    model: Scale  # tokenizer, model shape, base run, evaluation windows
    run_steps: int
    stages: tuple[int, ...]  # steps at which each run is saved
    lrs: tuple[float, ...]
    emphasis: int  # batch rows of a run's own domain (the rest: every domain in turn)
    report_max_items: int  # held-out windows / questions per task: the verdict's resolution
    report_fraction: float  # of each task's groups (sources)
    eval_per_source: int  # evaluation documents per source: more sources, more independent units
    questions_per_document: int
    mc_items: int  # questions per split, at most (accuracy moves in steps of 1/questions)


RECIPES = {
    "test": Recipe(model=SCALES["test"], run_steps=8, stages=(4, 8), lrs=(1e-3, 3e-3), emphasis=4,
                   report_max_items=16, report_fraction=0.4, eval_per_source=2, questions_per_document=2, mc_items=16),
    # Set before any search ran on it, from the build's cost (287 s on one thread of a quiet 2-core
    # machine, 2026-12-06) and the sources each domain has (prose: 79 topics). questions_per_document
    # and the word-swap questions were chosen on the dev pool (seed 0) from the singles' accuracies
    # alone (their spread against the binomial error), before any search on them.
    "demo": Recipe(model=replace(SCALES["demo"], eval_docs=80, max_items=32, eval_batch=32), run_steps=120,
                   stages=(60, 120), lrs=(1e-3, 3e-3), emphasis=7, report_max_items=96, report_fraction=0.4,
                   eval_per_source=2, questions_per_document=4, mc_items=256),
}


def lr_tag(lr: float) -> str:
    return f"lr{lr:.0e}".replace("-0", "-")


def checkpoint_names(recipe: Recipe, domains: list[str]) -> list[str]:
    return [BASE, *(f"{d}-{lr_tag(lr)}-s{stage}" for d in domains for lr in recipe.lrs for stage in recipe.stages)]


def build_recycling_pool(cache_dir: Path, scale: str = "demo", seed: int = 0,
                         log: Callable[[str], object] = print) -> DemoPool:
    """Build (or reuse from `cache_dir`) the pool, its objective tasks and its left-out task."""
    if scale not in RECIPES:
        raise ValueError(f"unknown scale {scale!r}, expected one of {', '.join(RECIPES)}")
    recipe = RECIPES[scale]
    code = code_digest(__file__, questions.__file__, tiny_pool.__file__)  # what decides the files built
    key = {"scale": scale, "seed": seed, "python": platform.python_version(), "code": code}
    cache = BuildCache(cache_dir, key)
    # One thread: next to other work on 2 cores, two threads spun at 1-6 s per step where one took
    # 0.6 s (measured 2026-12-06, load ~8); two pools build side by side, one per core.
    domains = build_once(cache, lambda: _build(cache.folder, recipe, seed, log), threads=1,
                         recipe=asdict(recipe), label=f"recycling pool ({scale}, seed {seed})", log=log)
    # The pool's seed also seeds the search/held-out split: another pool seed is other data.
    return _specs(cache.folder, recipe, domains, f"recycling-{scale}-{seed}", split_seed=seed)


def _build(folder: Path, recipe: Recipe, seed: int, log) -> tuple[list[str], dict[str, float]]:
    cfg = recipe.model
    splits = split_corpora(train_docs=cfg.train_docs, eval_docs=cfg.eval_docs, doc_chars=cfg.doc_chars, seed=seed,
                           eval_per_source=recipe.eval_per_source)
    _write_tasks(folder / "tasks", splits, recipe, seed, log)
    tokenizer = train_tokenizer([doc for train_docs, _ in splits.values() for doc in train_docs], cfg)
    streams = {domain: token_stream(tokenizer, train_docs) for domain, (train_docs, _) in splits.items()}

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(model_config(cfg, tokenizer))
    losses = {BASE: train(model, list(streams.values()), steps=cfg.base_steps, lr=cfg.base_lr, batch=cfg.batch,
                          ctx=cfg.ctx, seed=seed, log=log, label=BASE)}
    save_checkpoint(model, tokenizer, folder / "pool" / BASE)
    base_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    others = list(streams.values())
    for number, (domain, own) in enumerate(streams.items()):
        for lr in recipe.lrs:
            model.load_state_dict(base_state)
            name = f"{domain}-{lr_tag(lr)}"

            def save_stage(step, name=name):
                if step in recipe.stages:
                    save_checkpoint(model, tokenizer, folder / "pool" / f"{name}-s{step}")

            # Batch row i reads rows[i % batch]: `emphasis` rows of the run's domain, the rest cycling all.
            rows = [own] * recipe.emphasis + [others[i % len(others)] for i in range(cfg.batch - recipe.emphasis)]
            losses[name] = train(model, rows, steps=recipe.run_steps, lr=lr, batch=cfg.batch, ctx=cfg.ctx,
                                 seed=seed * 1000 + number * 10 + recipe.lrs.index(lr), log=log, label=name,
                                 after_step=save_stage)
    return list(splits), losses


def _write_tasks(task_dir: Path, splits, recipe: Recipe, seed: int, log) -> None:
    """lm_loss files (text + group) and the next-line questions of the C sources."""
    task_dir.mkdir(parents=True, exist_ok=True)
    for domain, (_, documents) in splits.items():
        if domain == OBJECTIVE_MC:
            rows = word_swap_questions(documents, group_prefix=domain, per_document=recipe.questions_per_document, seed=seed)
        else:
            rows = [{"text": text, "group": f"{domain}:{source}"} for source, text in documents]
        with (task_dir / f"{domain}.jsonl").open("w", encoding="utf-8") as out:
            out.writelines(json.dumps(row) + "\n" for row in rows)
        log(f"task {domain}: {len(rows)} {'questions' if domain == OBJECTIVE_MC else 'documents'}"
            f" from {len({row['group'] for row in rows})} sources")


def _specs(folder: Path, recipe: Recipe, domains: list[str], name: str, split_seed: int) -> DemoPool:
    cfg = recipe.model
    pool = PoolSpec(name=name, checkpoints=tuple(
        CheckpointRef(name=n, path=str(folder / "pool" / n)) for n in checkpoint_names(recipe, domains)))

    def task(domain: str, kind: str) -> TaskSpec:
        return TaskSpec(name=domain, kind=kind, path=str(folder / "tasks" / f"{domain}.jsonl"), seq_len=cfg.ctx,
                        max_items=recipe.mc_items if kind == "multiple_choice" else cfg.max_items,
                        report_max_items=recipe.mc_items if kind == "multiple_choice" else recipe.report_max_items, report_fraction=recipe.report_fraction,
                        batch_size=cfg.eval_batch, split_seed=split_seed)

    tasks = [task(d, "lm_loss") for d in OBJECTIVE_LM if d in domains]
    if OBJECTIVE_MC in domains:
        tasks.append(task(OBJECTIVE_MC, "multiple_choice"))
    left_out = [task(LEFT_OUT, "lm_loss")] if LEFT_OUT in domains else []
    return DemoPool(pool=pool, tasks=tasks, left_out_tasks=left_out)
