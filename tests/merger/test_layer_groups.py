"""Weights per layer group: the grouping, the in-place merge, the export and its mergekit config."""

from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import load_file

from contracts.models import MergeSpec, WeightLayout
from merger import CheckpointPool, MethodError, WeightsError, allocate_outputs, export_merge, make_method, fused
from merger.config_merge import merge_config
from merger.layers import group_ranges, group_runs, tensor_groups
from merger.segments import Segment
from merger_fixtures import assert_merged_per_group, assert_mergekit_reproduces, merged, spec_of



def grouped(k: int, **merge) -> MergeSpec:
    return MergeSpec(weights=WeightLayout(per="layer_groups", groups=k), **merge)


# -- the grouping -------------------------------------------------------------------------


def test_groups_are_contiguous_blocks_of_nearly_equal_size():
    assert group_ranges(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert group_ranges(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert group_ranges(5, 2) == [(0, 3), (3, 5)]
    for bad in (0, 6):
        with pytest.raises(ValueError, match="cannot split 5 layer"):
            group_ranges(5, bad)


def test_each_tensor_goes_to_its_layers_group_embeddings_first_head_last():
    names = ["transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight", "lm_head.weight",
             "transformer.h.1.attn.c_attn.weight", "transformer.h.10.mlp.c_fc.weight", "transformer.h.2.ln_1.bias",
             "model.layers.11.self_attn.q_proj.weight", "model.embed_tokens.weight", "model.norm.weight"]
    groups = tensor_groups(names, 12, 4)  # blocks of layers 0-2, 3-5, 6-8, 9-11
    assert groups == {
        "transformer.wte.weight": 0, "transformer.wpe.weight": 0, "transformer.ln_f.weight": 3, "lm_head.weight": 3,
        "transformer.h.1.attn.c_attn.weight": 0, "transformer.h.10.mlp.c_fc.weight": 3,  # h.1. is not h.10.
        "transformer.h.2.ln_1.bias": 0, "model.layers.11.self_attn.q_proj.weight": 3,
        "model.embed_tokens.weight": 0, "model.norm.weight": 3,
    }


def test_a_segment_in_file_order_is_cut_into_runs_of_one_group():
    names = ("h.0.w", "h.1.w", "h.10.w", "h.11.w", "h.2.w", "ln_f.w")
    segment = Segment(names, torch.float32, (0, 4, 8, 12, 16, 20), 22)
    groups = tensor_groups(names, 12, 2)  # layers 0-5, 6-11; ln_f with the last group
    assert group_runs(segment, groups) == [(0, 0, 8, ("h.0.w", "h.1.w")), (1, 8, 16, ("h.10.w", "h.11.w")),
                                           (0, 16, 20, ("h.2.w",)), (1, 20, 22, ("ln_f.w",))]
    assert group_runs(segment, {}) == [(0, 0, 22, names)]


def test_layout_validation_and_old_specs_load():
    assert MergeSpec.model_validate({"method": "linear", "normalize": True}).weights.n_groups == 1
    assert grouped(3).weights.n_groups == 3
    for bad in ({"per": "layer_groups"}, {"per": "layer_groups", "groups": 1}, {"per": "model", "groups": 2},
                {"per": "heads", "groups": 2}):
        with pytest.raises(ValueError):
            WeightLayout.model_validate(bad)
    layout = grouped(2).weights
    assert layout.by_checkpoint(["a", "b"], [0.1, 0.9, 0.5, 0.5]) == {"a": [0.1, 0.5], "b": [0.9, 0.5]}
    assert layout.mean_by_checkpoint(["a", "b"], [0.1, 0.9, 0.5, 0.5]) == pytest.approx({"a": 0.3, "b": 0.7})


# -- the in-place merge -----------------------------------------------------------------


def test_grouped_merge_is_each_tensor_merged_with_its_groups_weights(gpt2_pool):
    per_group = [[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]  # the fixture's GPT-2 has 2 layers: 2 groups of one
    out = merged(gpt2_pool, grouped(2), [w for group in per_group for w in group])
    groups = tensor_groups(gpt2_pool.tensor_names, 2, 2)
    assert set(groups.values()) == {0, 1}
    assert_merged_per_group(gpt2_pool, out, groups, per_group)


@pytest.mark.parametrize("path", ["fused", "eager"])
def test_equal_groups_merge_bit_for_bit_as_the_global_weights(gpt2_bf16_dirs, monkeypatch, path):
    if path == "eager":
        monkeypatch.setattr(fused, "combine", lambda *args: False)
    with CheckpointPool.open(spec_of(gpt2_bf16_dirs)) as pool:
        weights = [0.1, 0.2, 0.3, 0.4]
        assert pool.segments  # the grouped merge cuts segments into runs: that must not change a bit
        want = merged(pool, MergeSpec(), weights)
        got = merged(pool, grouped(2), weights * 2)
        assert all(torch.equal(want[name], got[name]) for name in pool.tensor_names)
        base = MergeSpec(normalize=False, base="c0")
        want = merged(pool, base, [0.0, 0.5, 0.3, 0.9])
        got = merged(pool, grouped(2, normalize=False, base="c0"), [0.0, 0.5, 0.3, 0.9] * 2)
        assert all(torch.equal(want[name], got[name]) for name in pool.tensor_names)


def test_each_group_is_normalized_on_its_own(gpt2_pool):
    a = merged(gpt2_pool, grouped(2), [2.0, 1.0, 1.0, 0.0, 0.0, 5.0])
    b = merged(gpt2_pool, grouped(2), [0.5, 0.25, 0.25, 0.0, 0.0, 1.0])
    assert all(torch.equal(a[name], b[name]) for name in gpt2_pool.tensor_names)
    assert make_method(gpt2_pool, grouped(2)).check_weights([2, 1, 1, 0, 0, 5]) == [0.5, 0.25, 0.25, 0.0, 0.0, 1.0]


def test_bad_grouped_weights_are_refused(gpt2_pool):
    with pytest.raises(MethodError, match="3 layer groups, but the models of pool 'pool' have 2 layer"):
        make_method(gpt2_pool, grouped(3))
    method = make_method(gpt2_pool, grouped(2))
    with pytest.raises(WeightsError, match="got 3 weights for 2 layer groups x the 3 checkpoints"):
        method.merge_into([0.2, 0.3, 0.5], allocate_outputs(gpt2_pool))
    with pytest.raises(WeightsError, match="layer group 1: all weights are zero"):
        method.check_weights([0.2, 0.3, 0.5, 0.0, 0.0, 0.0])


# -- the export and its mergekit config ------------------------------------------------------


@pytest.mark.parametrize("spec, weights", [
    (grouped(2), [0.6, 0.3, 0.1, 0.1, 0.1, 0.8]),
    (grouped(2, normalize=False, base="c1"), [0.7, 0.0, 0.2, 0.1, 0.0, 1.3]),
])
def test_export_writes_slices_that_recycle_merge_config_reproduces_bit_for_bit(gpt2_dirs, tmp_path, spec, weights):
    with CheckpointPool.open(spec_of(gpt2_dirs)) as pool:
        exported = export_merge(pool, spec, weights, tmp_path / "export")
        in_place = merged(pool, spec, weights)
    config = yaml.safe_load((exported / "mergekit.yaml").read_text())
    assert "models" not in config and len(config["slices"]) == 2
    assert [s["sources"][0]["layer_range"] for s in config["slices"]] == [[0, 1], [1, 2]]
    first_weights = [src.get("parameters", {}).get("weight") for src in config["slices"][1]["sources"]]
    assert first_weights[:2] == [0.1, 0.1] if spec.base is None else first_weights == [0.1, 1.3, None]
    rerun = merge_config(exported / "mergekit.yaml", tmp_path / "rerun")
    a, b = load_file(str(exported / "model.safetensors")), load_file(str(rerun / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for name, tensor in a.items():  # mergekit's arithmetic vs the search's: within fp32 rounding
        torch.testing.assert_close(tensor, in_place[name], rtol=1e-5, atol=1e-6)


# run_mergekit creates the reference venv when missing (as tests/merger/test_mergekit_equality.py does).
def test_mergekit_reproduces_grouped_exports_bit_for_bit(gpt2_dirs, gpt2_bf16_dirs, tmp_path):
    cases = {
        "linear": (gpt2_dirs, grouped(2), [0.6, 0.3, 0.1, 0.1, 0.1, 0.8]),
        "task-arithmetic": (gpt2_dirs, grouped(2, normalize=False, base="c1"), [0.7, 0.0, 0.2, 0.1, 0.0, 1.3]),
        "linear-bf16": (gpt2_bf16_dirs, grouped(2), [0.1, 0.2, 0.3, 0.4, 0.4, 0.3, 0.2, 0.1]),
    }
    assert_mergekit_reproduces(cases, tmp_path)
