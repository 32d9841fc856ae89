"""Exports: loadable by transformers, identical to the in-memory merge, sharded like HF,
described by a mergekit YAML, and never half-written or overwriting."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

import merger.export as export_module
from contracts.models import MergeSpec
from merger import CheckpointPool, ExportError, WeightsError, allocate_outputs, export_merge, merge_into
from merger_fixtures import spec_of

WEIGHTS = [0.5, 0.3, 0.2]


@pytest.fixture
def gpt2_pool(gpt2_dirs):
    with CheckpointPool.open(spec_of(gpt2_dirs)) as pool:
        yield pool


def model_holding(pool: CheckpointPool, tensors: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A model built from the pool's config with the given (merged) tensors copied in."""
    config = transformers.AutoConfig.from_pretrained(pool.config_dir)
    model = transformers.AutoModelForCausalLM.from_config(config)
    state = model.state_dict()
    with torch.no_grad():
        for name, t in tensors.items():
            state[name].copy_(t)
    model.tie_weights()  # lm_head is tied to wte and not on disk
    return model.eval()


def logits(model, ids=torch.arange(40).view(2, 20)) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def read_all(out_dir) -> dict[str, torch.Tensor]:
    tensors = {}
    for f in sorted(out_dir.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    return tensors


def test_export_loads_and_matches_in_memory_merge(gpt2_pool, tmp_path):
    out_dir = export_merge(gpt2_pool, MergeSpec(), WEIGHTS, tmp_path / "merged")
    assert out_dir == tmp_path / "merged"
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "mergekit.yaml",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    merged = allocate_outputs(gpt2_pool)
    merge_into(gpt2_pool, MergeSpec(), WEIGHTS, merged)
    on_disk = read_all(out_dir)
    assert on_disk.keys() == merged.keys()
    assert all(torch.equal(on_disk[n], merged[n]) for n in merged)

    loaded = transformers.AutoModelForCausalLM.from_pretrained(out_dir).eval()
    assert torch.equal(logits(loaded), logits(model_holding(gpt2_pool, merged)))
    # The merge differs from every input (it is not just a copy of one).
    alone = model_holding(gpt2_pool, {n: gpt2_pool.tensor(0, n) for n in gpt2_pool.tensor_names})
    assert not torch.allclose(logits(loaded), logits(alone))

    tokenizer = transformers.AutoTokenizer.from_pretrained(out_dir)
    assert tokenizer("merge the checkpoints").input_ids
    assert json.loads((out_dir / "config.json").read_text()) == json.loads(
        (gpt2_pool.config_dir / "config.json").read_text()
    )
    with safe_open(str(out_dir / "model.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt"
    assert json.loads(meta["recycle.weights"]) == pytest.approx(WEIGHTS)
    assert json.loads(meta["recycle.checkpoints"]) == ["c0", "c1", "c2"]


def test_sharded_export(gpt2_pool, tmp_path):
    out_dir = export_merge(gpt2_pool, MergeSpec(), WEIGHTS, tmp_path / "sharded", max_shard_bytes=30_000)
    index = json.loads((out_dir / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in out_dir.glob("*.safetensors"))
    n = len(shards)
    assert n > 2
    assert shards == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    assert not (out_dir / "model.safetensors").exists()
    assert sorted(index["weight_map"]) == gpt2_pool.tensor_names
    assert index["metadata"]["total_size"] == gpt2_pool.nbytes
    for shard in shards:
        held = set(load_file(str(out_dir / shard)))
        assert held == {t for t, f in index["weight_map"].items() if f == shard}
        sizes = sum(gpt2_pool.tensor(0, t).nbytes for t in held)
        assert sizes <= 30_000 or len(held) == 1

    single = export_merge(gpt2_pool, MergeSpec(), WEIGHTS, tmp_path / "single")
    a, b = read_all(out_dir), read_all(single)
    assert all(torch.equal(a[k], b[k]) for k in b)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out_dir).eval()
    assert torch.equal(logits(loaded), logits(transformers.AutoModelForCausalLM.from_pretrained(single).eval()))


def test_export_in_another_dtype(gpt2_pool, tmp_path):
    out_dir = export_merge(gpt2_pool, MergeSpec(), WEIGHTS, tmp_path / "bf16", dtype=torch.bfloat16)
    assert json.loads((out_dir / "config.json").read_text())["dtype"] == "bfloat16"
    merged = allocate_outputs(gpt2_pool, dtype=torch.bfloat16)
    merge_into(gpt2_pool, MergeSpec(), WEIGHTS, merged)
    on_disk = read_all(out_dir)
    assert all(on_disk[n].dtype == torch.bfloat16 and torch.equal(on_disk[n], merged[n]) for n in merged)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out_dir)
    assert loaded.dtype == torch.bfloat16
    config = yaml.safe_load((out_dir / "mergekit.yaml").read_text())
    assert (config["dtype"], config["out_dtype"]) == ("float32", "bfloat16")


def test_mergekit_yaml_linear(gpt2_pool, tmp_path):
    out_dir = export_merge(gpt2_pool, MergeSpec(), [2, 1, 1], tmp_path / "m")
    text = (out_dir / "mergekit.yaml").read_text()
    assert text.startswith("# ")
    config = yaml.safe_load(text)
    assert config == {
        "merge_method": "linear",
        "models": [
            {"model": str(p), "parameters": {"weight": w}} for p, w in zip(gpt2_pool.paths, [0.5, 0.25, 0.25])
        ],
        # The weights are normalized already: mergekit must not divide by their (rounded) sum again.
        "parameters": {"normalize": False},
        "dtype": "float32",
    }
    assert all(str(p).startswith("/") for p in gpt2_pool.paths)


def test_mergekit_yaml_task_arithmetic(gpt2_pool, tmp_path):
    spec = MergeSpec(normalize=False, base="c1")
    out_dir = export_merge(gpt2_pool, spec, [0.4, 9.0, -0.2], tmp_path / "ta")
    config = yaml.safe_load((out_dir / "mergekit.yaml").read_text())
    assert config == {
        "merge_method": "task_arithmetic",
        "base_model": str(gpt2_pool.paths[1]),
        "models": [
            {"model": str(gpt2_pool.paths[0]), "parameters": {"weight": 0.4}},
            {"model": str(gpt2_pool.paths[2]), "parameters": {"weight": -0.2}},
        ],
        "parameters": {"normalize": False, "lambda": 1.0, "rescale": False, "int8_mask": False},
        "dtype": "float32",
    }
    # The search's in-memory merge sums in another order than mergekit (the export's): within rounding.
    merged = allocate_outputs(gpt2_pool)
    merge_into(gpt2_pool, spec, [0.4, 9.0, -0.2], merged)
    on_disk = read_all(out_dir)
    for n in merged:
        torch.testing.assert_close(on_disk[n], merged[n], atol=1e-6, rtol=1e-6, msg=n)


def test_mergekit_yaml_bf16_pool(gpt2_bf16_dirs, tmp_path):
    with CheckpointPool.open(spec_of(gpt2_bf16_dirs)) as pool:
        out_dir = export_merge(pool, MergeSpec(), [1, 1, 1, 1], tmp_path / "b")
        config = yaml.safe_load((out_dir / "mergekit.yaml").read_text())
        assert (config["dtype"], config["out_dtype"]) == ("float32", "bfloat16")
        out_dir = export_merge(pool, MergeSpec(accumulate="pool"), [1, 1, 1, 1], tmp_path / "p")
        config = yaml.safe_load((out_dir / "mergekit.yaml").read_text())
        assert config["dtype"] == "bfloat16" and "out_dtype" not in config
        assert transformers.AutoModelForCausalLM.from_pretrained(out_dir).dtype == torch.bfloat16


def test_single_file_pool_export(raw_files, tmp_path):
    with CheckpointPool.open(spec_of(raw_files)) as pool:
        out_dir = export_merge(pool, MergeSpec(), [1, 1, 1, 1], tmp_path / "raw", metadata={"run": "r1", "step": 7})
        assert sorted(p.name for p in out_dir.iterdir()) == ["mergekit.yaml", "model.safetensors"]
        merged = allocate_outputs(pool)
        merge_into(pool, MergeSpec(), [1, 1, 1, 1], merged)
        on_disk = read_all(out_dir)
        assert all(torch.equal(on_disk[n], merged[n]) and on_disk[n].dtype == merged[n].dtype for n in merged)
        with safe_open(str(out_dir / "model.safetensors"), "pt") as f:
            meta = f.metadata()
        assert (meta["run"], meta["step"], meta["format"]) == ("r1", "7", "pt")


def test_refuses_non_empty_target(gpt2_pool, tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists and is not empty") as caught:
        export_merge(gpt2_pool, MergeSpec(), WEIGHTS, target)
    assert isinstance(caught.value, FileExistsError) and isinstance(caught.value, ValueError)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no leftovers


def test_empty_existing_target_is_used(gpt2_pool, tmp_path):
    (tmp_path / "empty").mkdir()
    out_dir = export_merge(gpt2_pool, MergeSpec(), WEIGHTS, tmp_path / "empty")
    assert (out_dir / "model.safetensors").is_file()


def test_crash_leaves_no_partial_export(gpt2_pool, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(export_module, "mergekit_yaml", boom)  # fails after the weights are written
    with pytest.raises(RuntimeError, match="disk on fire"):
        export_merge(gpt2_pool, MergeSpec(), WEIGHTS, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_bad_weights_touch_nothing(gpt2_pool, tmp_path):
    with pytest.raises(WeightsError):
        export_merge(gpt2_pool, MergeSpec(), [1, 2], tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_export_never_compiles_the_fused_kernel(gpt2_bf16_dirs, tmp_path, monkeypatch):
    """An export merges once, bound by the disk write: a compile (seconds) would dominate it."""
    from merger import fused

    def no_compile(n):
        raise AssertionError("export compiled the fused kernel")

    monkeypatch.setattr(fused, "_kernels", {})
    monkeypatch.setattr(fused, "_kernel", no_compile)
    with CheckpointPool.open(spec_of(gpt2_bf16_dirs)) as pool:
        out_dir = export_merge(pool, MergeSpec(), [0.1, 0.2, 0.3, 0.4], tmp_path / "out")
    assert (out_dir / "model.safetensors").exists() and fused._unavailable is None
