"""Weights per module class: the classification, the in-place merge, the export's filtered
mergekit config (and mergekit 0.1.5 reproducing it, on GPT-2; Llama: test_mergekit_equality.py)."""

from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import load_file

from contracts.models import MergeSpec, WeightLayout
from merger import CheckpointPool, MethodError, WeightsError, allocate_outputs, export_merge, make_method, fused
from merger.config_merge import merge_config
from merger.export import module_class_filters
from merger.layers import module_class, tensor_module_classes
from merger_fixtures import assert_merged_per_group, assert_mergekit_reproduces, merged, spec_of

CLASSES = WeightLayout.MODULE_CLASSES
EMBEDDINGS, ATTENTION, MLP, NORMS = range(4)


def by_class(**merge) -> MergeSpec:
    return MergeSpec(weights=WeightLayout(per="module_classes"), **merge)


# -- the classification -------------------------------------------------------------------


def test_gpt2_and_llama_tensors_take_their_modules_class():
    want = {
        "transformer.wte.weight": EMBEDDINGS, "transformer.wpe.weight": EMBEDDINGS, "lm_head.weight": EMBEDDINGS,
        "transformer.h.0.attn.c_attn.weight": ATTENTION, "transformer.h.0.attn.c_attn.bias": ATTENTION,
        "transformer.h.11.attn.c_proj.bias": ATTENTION, "transformer.h.0.attn.bias": ATTENTION,  # the mask buffer
        "transformer.h.3.mlp.c_fc.weight": MLP, "transformer.h.3.mlp.c_proj.bias": MLP,
        "transformer.h.0.ln_1.weight": NORMS, "transformer.h.0.ln_2.bias": NORMS, "transformer.ln_f.weight": NORMS,
        "model.embed_tokens.weight": EMBEDDINGS,
        "model.layers.0.self_attn.q_proj.weight": ATTENTION, "model.layers.0.self_attn.q_proj.bias": ATTENTION,  # Qwen2
        "model.layers.0.self_attn.o_proj.weight": ATTENTION,
        "model.layers.0.mlp.gate_proj.weight": MLP, "model.layers.0.mlp.down_proj.weight": MLP,
        "model.layers.0.input_layernorm.weight": NORMS, "model.layers.0.post_attention_layernorm.weight": NORMS,
        "model.layers.0.self_attn.q_norm.weight": NORMS,  # Qwen3: a norm inside attention is a norm
        "model.norm.weight": NORMS,
    }
    assert tensor_module_classes(list(want)) == want


@pytest.mark.parametrize("name", ["score.weight", "classifier.bias", "model.layers.0.router.weight"])
def test_a_tensor_of_no_class_is_refused_by_name(name):
    with pytest.raises(MethodError, match=f"tensor {name!r} is in no module class"):
        module_class(name)


def test_layout_validation():
    assert by_class().weights.n_groups == 4 and CLASSES == ("embeddings", "attention", "mlp", "norms")
    with pytest.raises(ValueError, match="weights.groups is for per: layer_groups .per: module_classes has one"):
        WeightLayout.model_validate({"per": "module_classes", "groups": 4})
    layout = by_class().weights
    assert layout.group_label(1) == "module class attention" and layout.groups_word == "module classes"
    assert WeightLayout(per="layer_groups", groups=2).group_label(1) == "layer group 1"


# -- the mergekit filters --------------------------------------------------------------------

GPT2_NAMES = ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.attn.c_attn.weight",
              "transformer.h.0.attn.c_attn.bias", "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.ln_1.weight",
              "transformer.h.0.ln_2.bias", "transformer.ln_f.weight"]
LLAMA_NAMES = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
               "model.layers.0.self_attn.q_norm.weight", "model.layers.0.mlp.up_proj.weight",
               "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
               "model.norm.weight", "lm_head.weight"]


@pytest.mark.parametrize("names, want", [
    (GPT2_NAMES, [("ln_1", NORMS), ("ln_2", NORMS), ("ln_f", NORMS), ("wpe", EMBEDDINGS), ("wte", EMBEDDINGS),
                  ("attn", ATTENTION), ("mlp", MLP)]),
    # "norm" covers the layernorms, and comes first: post_attention_layernorm holds "attention".
    (LLAMA_NAMES, [("norm", NORMS), ("embed_tokens", EMBEDDINGS), ("lm_head", EMBEDDINGS), ("self_attn", ATTENTION),
                   ("mlp", MLP)]),
])
def test_filters_are_the_deciding_name_parts(names, want):
    assert module_class_filters(names, tensor_module_classes(names)) == want


def test_filters_fall_back_to_exact_names_where_parts_would_misfile_a_tensor():
    # "wte" (embeddings) is in the attention tensor's name, and the embedding filters come first.
    names = ["transformer.wte.weight", "h.0.attn.wte_proj.weight", "h.0.ln_1.weight", "h.0.mlp.c_fc.weight"]
    classes = tensor_module_classes(names)
    assert classes["h.0.attn.wte_proj.weight"] == ATTENTION
    filters = module_class_filters(names, classes)
    assert sorted(filters) == sorted(classes.items())
    assert [len(f) for f, _ in filters] == sorted((len(f) for f, _ in filters), reverse=True)


# -- the in-place merge -----------------------------------------------------------------


PER_CLASS = [[0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4]]  # embeddings, attention, mlp, norms
WEIGHTS = [w for group in PER_CLASS for w in group]


def test_each_tensor_is_merged_with_its_classs_weights(gpt2_pool):
    out = merged(gpt2_pool, by_class(), WEIGHTS)
    classes = make_method(gpt2_pool, by_class()).group_of
    assert sorted(set(classes.values())) == [EMBEDDINGS, ATTENTION, MLP, NORMS]
    assert_merged_per_group(gpt2_pool, out, classes, PER_CLASS)


@pytest.mark.parametrize("path", ["fused", "eager"])
def test_equal_class_weights_merge_bit_for_bit_as_the_global_weights(gpt2_bf16_dirs, monkeypatch, path):
    if path == "eager":
        monkeypatch.setattr(fused, "combine", lambda *args: False)
    with CheckpointPool.open(spec_of(gpt2_bf16_dirs)) as pool:
        assert pool.segments  # the merge cuts segments into runs of one class: that must not change a bit
        for spec, weights in ((MergeSpec(), [0.1, 0.2, 0.3, 0.4]), (MergeSpec(normalize=False, base="c0"), [0.0, 0.5, 0.3, 0.9])):
            want = merged(pool, spec, weights)
            got = merged(pool, by_class(normalize=spec.normalize, base=spec.base), weights * 4)
            assert all(torch.equal(want[name], got[name]) for name in pool.tensor_names)


def test_bad_weights_and_pools_are_refused_naming_the_class(gpt2_pool, raw_files):
    method = make_method(gpt2_pool, by_class())
    with pytest.raises(WeightsError, match="got 3 weights for 4 module classes x the 3 checkpoints"):
        method.merge_into([0.2, 0.3, 0.5], allocate_outputs(gpt2_pool))
    with pytest.raises(WeightsError, match="module class attention: all weights are zero"):
        method.check_weights([0.2, 0.3, 0.5, 0.0, 0.0, 0.0, 1, 1, 1, 1, 1, 1])
    with CheckpointPool.open(spec_of(raw_files)) as raw:  # tensors named w, b, half...: no module
        with pytest.raises(MethodError, match="pool 'pool': tensor '.+' is in no module class"):
            make_method(raw, by_class())


# -- the export and its mergekit config ------------------------------------------------------


@pytest.mark.parametrize("spec, weights", [
    (by_class(), WEIGHTS),
    (by_class(normalize=False, base="c1"), [0.7, 0.0, 0.2, 0.1, 0.0, 1.3, -0.2, 0.0, 0.6, 0.4, 0.0, 0.4]),
])
def test_export_writes_filters_that_recycle_merge_config_reproduces_bit_for_bit(gpt2_pool, tmp_path, spec, weights):
    exported = export_merge(gpt2_pool, spec, weights, tmp_path / "export")
    in_place = merged(gpt2_pool, spec, weights)
    config = yaml.safe_load((exported / "mergekit.yaml").read_text())
    assert "slices" not in config
    models = [entry["model"] for entry in config["models"]]
    assert models == [str(p) for i, p in enumerate(gpt2_pool.paths) if spec.base != f"c{i}"]
    first = config["models"][0]["parameters"]["weight"]  # c0's weight in each class, by filter
    checked = make_method(gpt2_pool, spec).check_weights(weights)  # on the simplex where normalized
    values = [checked[g * 3] for g in range(4)]  # group-major: class g's weights start at g * 3
    assert first == [{"filter": f, "value": values[g]} for f, g in
                     [("ln_1", NORMS), ("ln_2", NORMS), ("ln_f", NORMS), ("wpe", EMBEDDINGS), ("wte", EMBEDDINGS),
                      ("attn", ATTENTION), ("mlp", MLP)]]
    rerun = merge_config(exported / "mergekit.yaml", tmp_path / "rerun")
    a, b = load_file(str(exported / "model.safetensors")), load_file(str(rerun / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for name, tensor in a.items():  # mergekit's arithmetic vs the search's: within fp32 rounding
        torch.testing.assert_close(tensor, in_place[name], rtol=1e-5, atol=1e-6)


def test_a_parameter_equal_in_every_class_is_written_once(gpt2_pool, tmp_path):
    weights = [0.5, 0.3, 0.2] + [0.5, 0.1, 0.4] * 3  # c0 has 0.5 everywhere
    exported = export_merge(gpt2_pool, by_class(), weights, tmp_path / "export")
    models = yaml.safe_load((exported / "mergekit.yaml").read_text())["models"]
    assert models[0]["parameters"]["weight"] == 0.5 and isinstance(models[1]["parameters"]["weight"], list)


# run_mergekit creates the reference venv when missing (as tests/merger/test_mergekit_equality.py does).
def test_mergekit_reproduces_module_class_exports_bit_for_bit(gpt2_dirs, gpt2_bf16_dirs, tmp_path):
    cases = {
        "linear": (gpt2_dirs, by_class(), WEIGHTS),
        "task-arithmetic": (gpt2_dirs, by_class(normalize=False, base="c1"),
                            [0.7, 0.0, 0.2, 0.1, 0.0, 1.3, -0.2, 0.0, 0.6, 0.4, 0.0, 0.4]),
        "linear-bf16": (gpt2_bf16_dirs, by_class(), [0.1, 0.2, 0.3, 0.4, 0.4, 0.3, 0.2, 0.1] * 2),
    }
    assert_mergekit_reproduces(cases, tmp_path)
