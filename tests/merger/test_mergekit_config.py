"""mergekit configs: how settings resolve per tensor, what is refused (naming it), and the CLI.

The arithmetic itself is checked against mergekit in test_mergekit_equality.py; these
need no mergekit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from contracts.models import MergeSpec
from merger import CheckpointPool, MethodError, Ties, make_method
from merger.config_merge import merge_config
from merger.mergekit_config import MergeConfigError, parse_config, plan_tensors
from merger.parameters import Parameter, Scope, evaluate_setting
from merger_fixtures import spec_of

WEIGHT = Parameter("weight", float, Scope.INPUT)
FLAG = Parameter("normalize", bool, Scope.SHARED, True)
NAMES = ["model.embed_tokens.weight", "model.norm.weight"] + [
    f"model.layers.{i}.{part}" for i in range(4) for part in ("self_attn.q_proj.weight", "mlp.up_proj.weight")]


# -- settings ------------------------------------------------------------------------


def test_gradients_interpolate_over_layers_as_mergekit():
    assert evaluate_setting(WEIGHT, "x", [0.0, 1.0], t=0.25) == 0.25
    assert evaluate_setting(WEIGHT, "x", [0.1, 0.5, 0.9], t=1 / 3) == pytest.approx((1 / 3) * 0.1 + (2 / 3) * 0.5)
    assert evaluate_setting(WEIGHT, "x", [0.1, 0.5, 0.9], t=1.0) == 0.9
    assert evaluate_setting(FLAG, "x", [True, False], t=0.99) is True  # booleans pick, never interpolate
    assert evaluate_setting(WEIGHT, "x", "1e-1") == 0.1  # numeric strings are numbers (pydantic's lax rule)


def test_conditions_take_the_first_matching_filter():
    setting = [{"filter": "self_attn", "value": 0.2}, {"filter": "mlp", "value": [0.0, 1.0]}, {"value": 0.9}]
    assert evaluate_setting(WEIGHT, "model.layers.0.self_attn.q_proj.weight", setting) == 0.2
    assert evaluate_setting(WEIGHT, "model.layers.3.mlp.up_proj.weight", setting, t=0.5) == 0.5
    assert evaluate_setting(WEIGHT, "model.norm.weight", setting) == 0.9
    assert evaluate_setting(WEIGHT, "model.norm.weight", [{"filter": "mlp", "value": 1}]) is None


def test_bad_values_name_the_parameter():
    with pytest.raises(MethodError, match="parameter 'weight' must be a number, got 'heavy'"):
        evaluate_setting(WEIGHT, "x", "heavy")
    with pytest.raises(MethodError, match="parameter 'normalize' must be true or false"):
        evaluate_setting(FLAG, "x", 0.5)


# -- plans -----------------------------------------------------------------------------


def plans_of(config: dict) -> dict:
    parsed = parse_config(config)
    return plan_tensors(parsed, {ref: i for i, ref in enumerate(parsed.models)}, NAMES, 4)


def test_layer_position_drives_gradients_and_the_base_comes_last():
    plans = plans_of({"merge_method": "task_arithmetic", "base_model": "b",
                      "models": [{"model": "a", "parameters": {"weight": [0.0, 0.3]}}], "parameters": {"lambda": [1, 2]}})
    for layer in range(4):
        plan = plans[f"model.layers.{layer}.mlp.up_proj.weight"]
        assert plan.inputs == (0, 1) and plan.base == 1  # b, not listed, is added last (mergekit does)
        assert plan.per_input["weight"][0] == pytest.approx(0.3 * layer / 3)
        assert plan.shared["lambda"] == pytest.approx(1 + layer / 3)
    assert plans["model.norm.weight"].per_input["weight"][0] == 0.0  # outside the layers: t = 0
    assert plans["model.norm.weight"].shared == {"int8_mask": False, "normalize": False, "rescale": False, "lambda": 1.0}


def test_slices_restart_gradients_and_take_their_own_parameters():
    sources = lambda lo, hi: [{"model": m, "layer_range": [lo, hi], "parameters": {"weight": [0.0, 1.0]}} for m in ("a", "b")]
    plans = plans_of({"merge_method": "linear", "parameters": {"normalize": True},
                      "slices": [{"sources": sources(0, 2)}, {"sources": sources(2, 4), "parameters": {"normalize": False}}]})
    weights = [plans[f"model.layers.{i}.self_attn.q_proj.weight"].per_input["weight"][0] for i in range(4)]
    assert weights == [0.0, 1.0, 0.0, 1.0]
    assert [plans[f"model.layers.{i}.mlp.up_proj.weight"].shared["normalize"] for i in range(4)] == [True, True, False, False]
    assert plans["model.embed_tokens.weight"].shared["normalize"] is True  # embeddings: the first slice
    assert plans["model.norm.weight"].shared["normalize"] is False  # the rest: the last slice


@pytest.mark.parametrize("config, message", [
    ({"merge_method": "slerp", "models": [{"model": "a"}]}, "merge_method 'slerp' is not supported by recycle"),
    ({"merge_method": "linear", "models": [{"model": "a"}], "tokenizer_source": "base", "chat_template": "x"},
     "unsupported mergekit fields 'chat_template', 'tokenizer_source' at the top level"),
    ({"merge_method": "linear", "modules": {}}, "unsupported mergekit field 'modules'"),
    ({"merge_method": "linear", "models": [{"model": "a", "parameters": {"weight": 1, "densty": 0.5}}]},
     "unknown parameter 'densty' in models\\[0\\] for merge_method 'linear'"),
    ({"merge_method": "ties", "models": [{"model": "a", "lora": "x"}]}, "unsupported mergekit field 'lora' in models\\[0\\]"),
    ({"merge_method": "linear", "models": [{"model": "a"}], "dtype": "int4"}, "dtype: 'int4' is not one of"),
    ({"merge_method": "linear", "slices": [{"sources": [{"model": "a", "layer_range": [0, 2]}]},
                                           {"sources": [{"model": "a", "layer_range": [0, 2]}]}]},
     "slices\\[1\\]: layer ranges \\[\\(0, 2\\)\\] move, drop or repeat layers"),
    ({"merge_method": "linear", "models": [{"model": "a"}, {"model": "a"}]}, "models list 'a' twice"),
    ({"merge_method": "linear", "models": [{"model": "a"}], "slices": []}, "exactly one of 'models' or 'slices'"),
])
def test_unsupported_configs_are_refused_naming_what(config, message):
    with pytest.raises(MergeConfigError, match=message):
        plans_of(config)


@pytest.mark.parametrize("config, message", [
    ({"merge_method": "ties", "models": [{"model": "a", "parameters": {"weight": 1}}]}, "'ties' needs a base_model"),
    ({"merge_method": "linear", "models": [{"model": "a", "parameters": {"weight": 1}}], "base_model": "b"},
     "missing required parameter 'weight' of model 'b'"),  # mergekit adds the base as an input
    ({"merge_method": "linear", "slices": [{"sources": [{"model": "a", "layer_range": [0, 2]}]}]},
     "the slices cover layers 0-1, the model has 4"),
    ({"merge_method": "ties", "base_model": "b", "slices": [{"sources": [{"model": "a", "layer_range": [0, 4]}]}]},
     "base_model 'b' must be one of the sources of every slice"),
])
def test_configs_that_cannot_resolve_are_refused(config, message):
    with pytest.raises((MergeConfigError, MethodError), match=message):
        plans_of(config)


# -- the registry's task-vector methods declare their parameters ------------------------


def test_methods_declare_mergekit_parameters_and_defaults():
    declared = {p.name: p for p in Ties.parameters}
    assert declared["density"].default == 1.0 and declared["density"].scope is Scope.NON_BASE
    assert declared["density"].search_range == (0.05, 1.0)
    assert declared["normalize"].default is True and declared["weight"].required


def test_search_side_parameters_are_checked(gpt2_dirs):
    with CheckpointPool.open(spec_of(gpt2_dirs)) as pool:
        spec = MergeSpec(method="ties", normalize=False, base="c0")
        method = make_method(pool, spec, {"density": [1.0, 0.5, 0.25], "lambda": 2})
        plan = method.plan([5.0, 0.6, 0.4])
        assert plan.inputs == (1, 2, 0) and plan.per_input == {"weight": (0.6, 0.4), "density": (0.5, 0.25)}
        assert plan.shared["lambda"] == 2.0 and plan.shared["normalize"] is True
        with pytest.raises(MethodError, match="merge method 'ties' has no parameter 'densty'; it takes: density"):
            make_method(pool, spec, {"densty": 0.5})
        with pytest.raises(MethodError, match="'ties' needs a base"):
            make_method(pool, MergeSpec(method="ties"))
        with pytest.raises(MethodError, match="parameter 'density': 2 values for the 3 checkpoints"):
            make_method(pool, spec, {"density": [0.5, 0.5]})


def test_a_search_merges_ties_in_place_as_its_export_does(gpt2_dirs):
    from merger import allocate_outputs

    with CheckpointPool.open(spec_of(gpt2_dirs)) as pool:
        method = make_method(pool, MergeSpec(method="ties", normalize=False, base="c1"), {"density": 0.5})
        out = allocate_outputs(pool)
        method.merge_into([0.3, 0.0, 0.8], out)
        for name in pool.tensor_names:
            want = torch.empty_like(out[name])
            method.merge_planned(method.plan([0.3, 0.0, 0.8]), name, want, method.scratch)
            assert torch.equal(out[name], want), name
        assert not torch.equal(out["transformer.h.0.mlp.c_fc.weight"], pool.tensor(1, "transformer.h.0.mlp.c_fc.weight"))


# -- the command ---------------------------------------------------------------------------


def recycle(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recycle.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_runs_a_config_with_relative_paths(gpt2_dirs, tmp_path):
    config = {"merge_method": "ties", "base_model": str(gpt2_dirs[0]), "models": [
        {"model": str(d), "parameters": {"weight": 0.5, "density": [0.2, 0.8]}} for d in gpt2_dirs[1:]]}
    (tmp_path / "mk.yaml").write_text(yaml.safe_dump(config))
    done = recycle("merge", "--config", "mk.yaml", "--out", "merged", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "merged").iterdir()) == [
        "config.json", "generation_config.json", "mergekit_config.yml", "model.safetensors"]
    merge_config(tmp_path / "mk.yaml", tmp_path / "in-process")
    a, b = load_file(str(tmp_path / "merged" / "model.safetensors")), load_file(str(tmp_path / "in-process" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("config, args, message", [
    ({"merge_method": "slerp", "models": []}, [], "merge_method 'slerp' is not supported"),
    ({"merge_method": "linear", "models": [{"model": "nowhere/model"}]}, [], "model 'nowhere/model' is not a local path"),
    ({"merge_method": "linear", "models": [{"model": "x"}]}, ["--weights", "1"], "--config describes the whole merge: drop --weights"),
])
def test_cli_refuses_bad_configs_with_exit_2_and_writes_nothing(tmp_path, config, args, message):
    (tmp_path / "mk.yaml").write_text(yaml.safe_dump(config))
    done = recycle("merge", "--config", "mk.yaml", *args, "--out", "merged", cwd=tmp_path)
    assert done.returncode == 2 and message in done.stdout + done.stderr, done.stdout + done.stderr
    assert not (tmp_path / "merged").exists() and not any(p.name.startswith(".merged") for p in tmp_path.iterdir())
    assert "Traceback" not in done.stderr
