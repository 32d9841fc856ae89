"""Checkpoint pools, merge methods and export.

    pool = CheckpointPool.open(spec.pool, allowed_roots=[...])   # mmap, validated
    method = make_method(pool, spec.merge)                        # keep one per thread
    out = allocate_outputs(pool)                                  # or a model's tensors
    method.merge_into(weights, out)                               # in place, no allocation
    export_merge(pool, spec.merge, weights, "runs/best")          # HF dir + mergekit.yaml

Methods: linear (task arithmetic with a base), task_arithmetic, ties, dare_linear, dare_ties
(merger/task_vectors.py), each declaring its parameters (merger/parameters.py). A mergekit
YAML runs with merger.config_merge.merge_config(config, out_dir) (`recycle merge --config`),
with mergekit 0.1.5's arithmetic (merger/exact.py).
"""

from merger.errors import ExportError, ExportExistsError, MergerError, MethodError, PoolError, WeightsError
from merger.export import export_merge, export_trial, mergekit_config
from merger.locate import within_roots
from merger.methods import (
    MERGE_METHODS,
    Linear,
    MergeMethod,
    Scratch,
    allocate_outputs,
    get_method,
    linear_combination,
    make_method,
    merge_into,
    register_method,
    TensorPlan,
)
from merger.parameters import Parameter, Scope
from merger.pool import CheckpointPool
from merger.task_vectors import DareLinear, DareTies, TaskArithmetic, TaskVectorMethod, Ties

__all__ = [
    "MERGE_METHODS",
    "CheckpointPool",
    "DareLinear",
    "DareTies",
    "Parameter",
    "Scope",
    "TaskArithmetic",
    "TaskVectorMethod",
    "TensorPlan",
    "Ties",
    "ExportError",
    "ExportExistsError",
    "Linear",
    "MergeMethod",
    "MergerError",
    "MethodError",
    "PoolError",
    "Scratch",
    "WeightsError",
    "allocate_outputs",
    "export_merge",
    "export_trial",
    "get_method",
    "linear_combination",
    "make_method",
    "merge_into",
    "mergekit_config",
    "register_method",
    "within_roots",
]
