"""Kind lm_eval: an lm-evaluation-harness task as an objective, scored on the resident model.

The task's YAML (or a folder of YAMLs and the task's name) is loaded with lm-eval's own
loader; its documents are split into search and report by group exactly like the JSONL
kinds (evaluator.data.split_rows: a document's "group" field, else the document itself),
and each split's requests are built once, here. A trial runs only the LM calls, through
ResidentLM over the model the worker merged into, then lm-eval's filters and
process_results per document: each document's metric value is one item of ItemScores,
so the verdict's cluster bootstrap resamples documents' groups as for the other kinds.

Metrics that lm-eval averages over documents (acc, acc_norm, ...) score as that mean.
The perplexity metrics score as nats per unit (per document, word or byte: the log of
lm-eval's perplexity; bits per byte as lm-eval's), lower being better.
Importing this module imports lm_eval (an optional extra: evaluator.tasks imports it lazily).
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

# Nothing is downloaded at run time: the datasets library reads this when lm_eval imports it.
os.environ["HF_DATASETS_OFFLINE"] = "1"

import datasets  # noqa: E402 - after the environment above
from lm_eval.api import metrics as lm_eval_metrics  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402
from lm_eval.tasks._yaml_loader import load_yaml  # noqa: E402 - TaskManager's own loader (include:, !function)

from contracts import TaskSpec  # noqa: E402
from evaluator.data import SPLITS, TaskDataError, split_rows  # noqa: E402
from evaluator.lm_eval_model import ResidentLM  # noqa: E402
from evaluator.tasks import Task  # noqa: E402

datasets.config.HF_HUB_OFFLINE = True  # also when datasets was imported before the line above
SUPPORTED_OUTPUTS = ("multiple_choice", "loglikelihood", "loglikelihood_rolling")
# Aggregations of per-document (log-likelihood, count) pairs: scored as -sum(ll) / sum(count) * scale.
PAIR_AGGREGATIONS = {lm_eval_metrics.weighted_perplexity: 1.0, lm_eval_metrics.bits_per_byte: 1 / math.log(2)}


def load_lm_eval_task(spec: TaskSpec):
    """The lm-eval Task `spec` names, its relative data_files resolved against its YAML's folder."""
    path = Path(spec.path)
    if path.is_dir():
        manager = TaskManager(include_path=str(path), include_defaults=False)
        entry = manager.task_index.get(spec.lm_eval_task)
        if entry is None:
            known = ", ".join(manager.all_subtasks[:20]) or "none"
            raise TaskDataError(f"task {spec.name!r}: no lm-eval task {spec.lm_eval_task!r} under {path} (tasks there: {known})")
        if entry.yaml_path is None or entry.name not in manager.all_subtasks:
            raise TaskDataError(f"task {spec.name!r}: {spec.lm_eval_task!r} is an lm-eval group or tag; name one task of it")
        yaml_path = Path(entry.yaml_path)
    elif path.is_file():
        manager, yaml_path = TaskManager(include_defaults=False), path
    else:
        raise TaskDataError(f"task file not found: {path}")
    try:
        config = load_yaml(yaml_path)
    except Exception as error:  # noqa: BLE001 - any fault of a user's YAML is a bad task file
        raise TaskDataError(f"task {spec.name!r}: cannot read {yaml_path}: {error}") from None
    if not isinstance(config.get("task"), str) or "group" in config or "task_list" in config:
        raise TaskDataError(f"task {spec.name!r}: {yaml_path} must define one lm-eval task (a \"task\" name, no group)")
    if spec.lm_eval_task is not None and config["task"] != spec.lm_eval_task:
        raise TaskDataError(f"task {spec.name!r}: {yaml_path} defines lm-eval task {config['task']!r}, not {spec.lm_eval_task!r}")
    kwargs = config.get("dataset_kwargs") or {}
    if "data_files" in kwargs:
        config["dataset_kwargs"] = {**kwargs, "data_files": _resolved(kwargs["data_files"], yaml_path.parent)}
    try:
        return manager.load([config])["tasks"][config["task"]]
    except Exception as error:  # noqa: BLE001 - e.g. data that is not on this machine (nothing is downloaded)
        raise TaskDataError(f"task {spec.name!r}: lm-eval could not load {config['task']!r} offline: "
                            f"{type(error).__name__}: {error}") from None


def _resolved(data_files, folder: Path):
    """data_files (a path, a list of them, or a dict of splits to either) made absolute from `folder`."""
    if isinstance(data_files, dict):
        return {split: _resolved(files, folder) for split, files in data_files.items()}
    if isinstance(data_files, (list, tuple)):
        return [_resolved(files, folder) for files in data_files]
    return str(folder / data_files) if isinstance(data_files, str) and "://" not in data_files else data_files


class LmEvalTask(Task):
    def __init__(self, spec: TaskSpec, tokenizer, max_positions: int):
        super().__init__(spec, tokenizer, max_positions)
        self.task = load_lm_eval_task(spec)
        self.filter_key = self._check_metric()
        self.lm = ResidentLM(tokenizer, max_length=self.seq_len, batch_size=spec.batch_size)
        docs = [dict(doc) for doc in self.task.eval_docs]
        if not docs:
            raise TaskDataError(f"task {spec.name!r}: lm-eval task {self.task.config.task!r} has no documents")
        index = {id(doc): number for number, doc in enumerate(docs)}
        splits = split_rows(docs, spec, key=lambda doc: json.dumps(doc, sort_keys=True, default=str))
        self.instances, self.doc_indices = {}, {}  # per split: its requests; its documents' indices in eval_docs
        for split in SPLITS:
            kept = splits[split][: spec.items(split)]
            self._set_groups(split, [group for group, _ in kept])
            self.doc_indices[split] = [index[id(doc)] for _, doc in kept]
            # A set, not a list: lm-eval tests each document's index for membership.
            self.task.build_all_requests(samples=set(self.doc_indices[split]))
            self.instances[split] = list(self.task.instances)
            self.lm.prepare(self.instances[split])

    def files(self) -> list[str]:
        """The YAML (or folder) and the local data files it names."""
        data_files = (self.task.config.dataset_kwargs or {}).get("data_files") or []

        def flat(files):
            if isinstance(files, dict):
                return [f for value in files.values() for f in flat(value)]
            return [f for value in files for f in flat(value)] if isinstance(files, (list, tuple)) else [files]

        return [self.spec.path, *(f for f in flat(data_files) if isinstance(f, str) and "://" not in f)]

    def _check_metric(self) -> str:
        """The filter whose results are scored; refuses a metric recycle cannot score per document."""
        task, spec = self.task, self.spec
        name = f"task {spec.name!r}: lm-eval task {task.config.task!r}"
        if task.OUTPUT_TYPE not in SUPPORTED_OUTPUTS:
            raise TaskDataError(f"{name} has output_type {task.OUTPUT_TYPE}; recycle scores {', '.join(SUPPORTED_OUTPUTS)} only")
        metric, _, filter_key = (spec.metric or "acc").partition(",")
        aggregations = task.aggregation()
        if metric not in aggregations:
            raise TaskDataError(f"{name} has no metric {metric!r} (it has: {', '.join(aggregations)})")
        aggregation = aggregations[metric]
        if aggregation is not lm_eval_metrics.mean and aggregation is not lm_eval_metrics.perplexity \
                and aggregation not in PAIR_AGGREGATIONS:
            raise TaskDataError(f"{name}: metric {metric!r} aggregates over all documents at once "
                                f"({getattr(aggregation, '__name__', aggregation)}), so it has no per-document score to search on")
        if task.higher_is_better().get(metric, True) != (spec.direction.value == "maximize"):
            raise TaskDataError(f"{name}: lm-eval and recycle disagree on whether a higher {metric!r} is better")
        filters = [ensemble.name for ensemble in task._filters]  # what task.apply_filters() applies
        if filter_key and filter_key not in filters:
            raise TaskDataError(f"{name} has no filter {filter_key!r} (it has: {', '.join(filters)})")
        return filter_key or filters[0]

    def _per_item(self, model, split: str) -> tuple[np.ndarray, np.ndarray]:
        instances = self.instances[split]
        for instance in instances:
            instance.resps.clear()
            instance.filtered_resps.clear()
        self.lm.model = model
        by_type = defaultdict(list)
        for instance in instances:
            by_type[instance.request_type].extend([instance] * instance.repeats)
        for request_type, requests in by_type.items():
            for instance, response in zip(requests, getattr(self.lm, request_type)(requests), strict=True):
                instance.resps.append(response)
        for ensemble in self.task._filters:  # task.apply_filters(), on this split's instances
            ensemble.apply(instances)
        by_doc = defaultdict(list)
        for instance in instances:
            by_doc[instance.doc_id].append(instance)
        values = []
        for doc_id in sorted(by_doc):  # lm-eval numbers a split's documents in their order
            requests = sorted(by_doc[doc_id], key=lambda instance: instance.idx)
            result = self.task.process_results(requests[0].doc, [r.filtered_resps[self.filter_key] for r in requests])
            values.append(result[self.spec.lm_eval_metric])
        return self._numerators_and_denominators(values)

    def _numerators_and_denominators(self, values: list) -> tuple[np.ndarray, np.ndarray]:
        aggregation = self.task.aggregation()[self.spec.lm_eval_metric]
        if aggregation in PAIR_AGGREGATIONS:  # (log-likelihood, words or bytes) per document
            scale = PAIR_AGGREGATIONS[aggregation]
            return (np.array([-ll * scale for ll, _ in values], dtype=np.float64),
                    np.array([count for _, count in values], dtype=np.float64))
        if aggregation is lm_eval_metrics.perplexity:  # a log-likelihood per document
            return -np.array(values, dtype=np.float64), np.ones(len(values))
        return np.array(values, dtype=np.float64), np.ones(len(values))
