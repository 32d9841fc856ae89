"""A search with weights per layer group end to end on the test-scale recycling pool: the embedded
runtime's workers merge K x N weights, the verdict judges the merge, the CLI tables and the export
show the grouped weights, and the export's mergekit config reproduces it."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import yaml
from rich.console import Console
from safetensors.torch import load_file

from contracts import SearchSpec, TrialStatus
from merger import export_trial
from merger.config_merge import merge_config
from recycle.local.report import print_front, print_verdict
from recycle.local.runtime import run_search
from recycle.local.verdict import held_out_verdict

GROUPS = 2  # the test-scale model has 2 layers


@pytest.fixture(scope="module")
def grouped_run(recycling_pool, tmp_path_factory):
    spec = SearchSpec(pool=recycling_pool.pool, tasks=recycling_pool.tasks, left_out_tasks=recycling_pool.left_out_tasks,
                      strategy="tpe", budget=len(recycling_pool.pool.checkpoints) + 8, concurrency=2, seed=1,
                      merge={"weights": {"per": "layer_groups", "groups": GROUPS}}, report_every_trial=False)
    out = tmp_path_factory.mktemp("grouped")
    driver = run_search(spec, "grouped", out / "trials.jsonl", workers=2)
    return spec, driver.store.results("grouped")


def test_every_trial_merges_its_grouped_weights(grouped_run):
    spec, results = grouped_run
    n = len(spec.pool.names)
    assert len(results) == spec.budget and all(r.status is TrialStatus.ok for r in results), [r.error for r in results]
    own = [r for r in results if r.proposal.source.kind == "tpe"]
    assert own and all(len(r.proposal.weights) == GROUPS * n for r in results)
    assert any(not np.allclose(*np.reshape(r.proposal.weights, (GROUPS, n))) for r in own)


def test_verdict_and_tables_read_grouped_weights(grouped_run):
    spec, results = grouped_run
    verdict = held_out_verdict({"grouped": (spec, results)}, resamples=300)
    [merge] = verdict.merges
    assert 1 <= merge.weights_used <= len(spec.pool.names)
    text = io.StringIO()
    console = Console(file=text, width=400)
    print_front(results, spec, console)
    print_verdict(verdict, spec, console)
    assert text.getvalue().count(f"weights (mean of {GROUPS} layer groups)") == 2
    plain = spec.model_copy(update={"merge": {"normalize": True}})
    with pytest.raises(ValueError, match="different weight layouts"):
        held_out_verdict({"grouped": (spec, results), "plain": (plain, [])})


def test_export_of_a_grouped_trial_reproduces_with_its_mergekit_config(grouped_run, tmp_path):
    spec, results = grouped_run
    best = next(r for r in results if r.proposal.source.kind == "tpe")
    out = export_trial("grouped", spec, best, tmp_path / "export")
    record = json.loads((out / "recycle.json").read_text())
    assert all(len(values) == GROUPS for values in record["weights"].values())
    assert len(yaml.safe_load((out / "mergekit.yaml").read_text())["slices"]) == GROUPS
    rerun = merge_config(out / "mergekit.yaml", tmp_path / "rerun")
    a, b = load_file(str(out / "model.safetensors")), load_file(str(rerun / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- weights per module class: the same path, 4 x N weights --------------------------------


@pytest.fixture(scope="module")
def class_run(recycling_pool, tmp_path_factory):
    spec = SearchSpec(pool=recycling_pool.pool, tasks=recycling_pool.tasks, left_out_tasks=recycling_pool.left_out_tasks,
                      strategy="tpe", budget=len(recycling_pool.pool.checkpoints) + 4, concurrency=2, seed=2,
                      merge={"weights": {"per": "module_classes"}}, report_every_trial=False)
    out = tmp_path_factory.mktemp("classes")
    driver = run_search(spec, "classes", out / "trials.jsonl", workers=2)
    return spec, driver.store.results("classes")


def test_a_search_per_module_class_runs_end_to_end(class_run, tmp_path):
    spec, results = class_run
    n = len(spec.pool.names)
    assert len(results) == spec.budget and all(r.status is TrialStatus.ok for r in results), [r.error for r in results]
    own = [r for r in results if r.proposal.source.kind == "tpe"]
    assert own and all(len(r.proposal.weights) == 4 * n for r in results)
    varied = [r for r in own if not np.allclose(np.reshape(r.proposal.weights, (4, n)), r.proposal.weights[:n])]
    assert varied  # the classes are searched apart
    text = io.StringIO()
    print_front(results, spec, Console(file=text, width=400))
    assert "weights (mean of 4 module classes)" in text.getvalue()
    out = export_trial("classes", spec, varied[0], tmp_path / "export")
    weights = [model["parameters"]["weight"] for model in yaml.safe_load((out / "mergekit.yaml").read_text())["models"]]
    assert ["attn", "mlp"] in ([c["filter"] for c in w][-2:] for w in weights if isinstance(w, list))
    rerun = merge_config(out / "mergekit.yaml", tmp_path / "rerun")
    a, b = load_file(str(out / "model.safetensors")), load_file(str(rerun / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
