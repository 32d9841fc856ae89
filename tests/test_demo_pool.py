"""The demo pool builds offline, caches, keeps its corpora apart and really specializes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluator.data import split_rows
from recycle.demo import corpora
from recycle.demo.tiny_pool import build_demo_pool, demo_splits
from recycle.demo.finetune import BASE, MARKER

SEED = 0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = tmp_path_factory.mktemp("demo-pool")
    return cache, build_demo_pool(cache, scale="test", seed=SEED, log=lambda line: None)


@pytest.fixture(scope="module")
def splits():
    return demo_splits("test", SEED)


def _mtimes(cache: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}


@torch.no_grad()
def _nll(model, tokenizer, texts: list[str], seq_len: int) -> float:
    ids = [t for doc in tokenizer(texts)["input_ids"] for t in doc + [tokenizer.eos_token_id]]
    usable = len(ids) // seq_len * seq_len
    batch = torch.tensor(ids[:usable]).view(-1, seq_len)
    return model(input_ids=batch, labels=batch).loss.item()


def test_pool_and_tasks_point_at_real_files(built, splits):
    cache, demo = built
    assert {"python", "prose", "c"} <= set(splits)
    assert demo.pool.names == [BASE, *splits]
    assert [task.name for task in demo.tasks] == demo.pool.names[1:]
    for checkpoint in demo.pool.checkpoints:
        assert Path(checkpoint.path) == cache / "pool" / checkpoint.name
        assert (Path(checkpoint.path) / "model.safetensors").is_file()
    for task in demo.tasks:
        assert task.kind == "lm_loss"
        rows = [json.loads(line) for line in Path(task.path).read_text().splitlines()]
        assert len(rows) >= 20 and all(set(row) == {"text", "group"} and row["text"].strip() for row in rows)


def test_checkpoints_and_tokenizer_load_offline(built):
    _, demo = built
    tokenizer = AutoTokenizer.from_pretrained(demo.pool.checkpoints[0].path)
    text = "def f(x):\n    return x  # naïve → ✓\n\n#include <Python.h>\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.eos_token_id is not None
    for checkpoint in demo.pool.checkpoints:
        model = AutoModelForCausalLM.from_pretrained(checkpoint.path)
        assert model.config.vocab_size == len(tokenizer)
        assert torch.isfinite(model(input_ids=torch.tensor([ids])).logits).all()


def test_train_and_eval_documents_never_overlap(built, splits):
    _, demo = built
    for task in demo.tasks:
        train, evaluation = splits[task.name]
        written = [json.loads(line) for line in Path(task.path).read_text().splitlines()]
        assert [(row["group"], row["text"]) for row in written] == [(f"{task.name}:{s}", t) for s, t in evaluation]
        assert not set(train) & {text for _, text in evaluation}
    everything = [doc for train, evaluation in splits.values() for doc in train + [text for _, text in evaluation]]
    assert len(everything) == len(set(everything))


def test_no_source_straddles_the_search_and_held_out_splits(built):
    """Chunks of one source file share its group, and the split hashes the group."""
    _, demo = built
    shared_sources = 0
    for task in demo.tasks:
        rows = [json.loads(line) for line in Path(task.path).read_text().splitlines()]
        splits = split_rows(rows, task, key=lambda row: row["text"])
        groups = {split: {group for group, _ in members} for split, members in splits.items()}
        assert groups["search"] and groups["report"] and not groups["search"] & groups["report"]
        shared_sources += len({row["group"] for row in rows}) < len(rows)
    assert shared_sources  # some source gave several chunks: the split had something to keep together


def test_second_call_is_a_cache_hit(built):
    cache, demo = built
    before = _mtimes(cache)
    lines = []
    started = time.perf_counter()
    again = build_demo_pool(cache, scale="test", seed=SEED, log=lines.append)
    assert time.perf_counter() - started < 2.0
    assert again == demo and not lines and _mtimes(cache) == before
    assert json.loads((cache / MARKER).read_text())["key"]["seed"] == SEED


def test_same_seed_same_weights(built, tmp_path):
    cache, demo = built
    again = build_demo_pool(tmp_path, scale="test", seed=SEED, log=lambda line: None)
    for first, second in zip(demo.pool.checkpoints, again.pool.checkpoints):
        a, b = (load_file(Path(c.path) / "model.safetensors") for c in (first, second))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_specialists_beat_the_base_on_their_own_domain(built):
    _, demo = built
    paths = {c.name: c.path for c in demo.pool.checkpoints}
    tokenizer = AutoTokenizer.from_pretrained(paths[BASE])
    base = AutoModelForCausalLM.from_pretrained(paths[BASE]).eval()
    for task in demo.tasks:
        texts = [json.loads(line)["text"] for line in Path(task.path).read_text().splitlines()]
        specialist = AutoModelForCausalLM.from_pretrained(paths[task.name]).eval()
        assert _nll(specialist, tokenizer, texts, task.seq_len) < _nll(base, tokenizer, texts, task.seq_len) - 0.05


def test_only_optional_corpora_may_be_missing(monkeypatch):
    monkeypatch.setitem(corpora.DOMAINS, "decimal", lambda: iter(()))
    assert "decimal" not in demo_splits("test", SEED)
    monkeypatch.setitem(corpora.DOMAINS, "c", lambda: iter(()))
    with pytest.raises(RuntimeError, match="'c': no documents"):
        demo_splits("test", SEED)
