"""Pydantic models for pools, searches, proposals and trial results.

All models are frozen and reject unknown fields, so a typo in a user's search
file or a malformed task payload fails loudly at the boundary instead of being
silently ignored deep inside a worker.
"""

from __future__ import annotations

from enum import Enum
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Names end up in Redis keys, file names and metric labels: keep them tame.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
# Weights one proposal carries at most: layer groups x checkpoints (a pool holds at most 256).
MAX_PROPOSAL_WEIGHTS = 4096


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Direction(str, Enum):
    minimize = "minimize"
    maximize = "maximize"

    @property
    def sign(self) -> float:
        """Multiplier that turns a score into a loss (lower is better)."""
        return 1.0 if self is Direction.minimize else -1.0


class Objective(Frozen):
    name: str = Field(pattern=NAME_PATTERN)
    direction: Direction


class CheckpointRef(Frozen):
    name: str = Field(pattern=NAME_PATTERN)
    # An HF-style directory (config.json + model*.safetensors) or one .safetensors file.
    path: str = Field(min_length=1, max_length=4096)


class PoolSpec(Frozen):
    name: str = Field(pattern=NAME_PATTERN)
    checkpoints: tuple[CheckpointRef, ...] = Field(min_length=1, max_length=256)

    @field_validator("checkpoints")
    @classmethod
    def _unique_names(cls, checkpoints: tuple[CheckpointRef, ...]) -> tuple[CheckpointRef, ...]:
        names = [c.name for c in checkpoints]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"checkpoint names must be unique, repeated: {', '.join(duplicates)}")
        return checkpoints

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.checkpoints]


class WeightLayout(Frozen):
    """How a proposal's weights apply to the model. per "model": one weight per checkpoint
    (N values). per "layer_groups": the layers split into `groups` contiguous blocks of nearly
    equal size (the first L mod K blocks one layer longer), one weight vector per block: K x N
    values, group-major; embeddings belong to group 0, every other tensor outside the layers
    (final norm, lm_head) to group K-1, as mergekit's slices assign them (merger.layers).
    per "module_classes": one weight vector per module class, in the order of MODULE_CLASSES
    (embeddings: token/position embeddings and lm_head; attention; mlp; norms: every norm
    layer, final norm included): 4 x N values, group-major, each class on its own simplex;
    every tensor, bias included, takes its module's class (merger.layers.module_class)."""

    MODULE_CLASSES: ClassVar[tuple[str, ...]] = ("embeddings", "attention", "mlp", "norms")

    per: Literal["model", "layer_groups", "module_classes"] = "model"
    groups: int | None = Field(default=None, ge=2, le=1024)

    @model_validator(mode="after")
    def _groups_match_per(self) -> "WeightLayout":
        if self.per == "model" and self.groups is not None:
            raise ValueError("weights.groups is for per: layer_groups (per: model has one weight per checkpoint)")
        if self.per == "module_classes" and self.groups is not None:
            raise ValueError("weights.groups is for per: layer_groups (per: module_classes has one weight vector "
                             f"per module class, {len(self.MODULE_CLASSES)}: {', '.join(self.MODULE_CLASSES)})")
        if self.per == "layer_groups" and self.groups is None:
            raise ValueError("weights per layer_groups needs groups: K (at least 2)")
        return self

    @property
    def n_groups(self) -> int:
        """Weight vectors per proposal (1 per model)."""
        return len(self.MODULE_CLASSES) if self.per == "module_classes" else self.groups or 1

    @property
    def groups_word(self) -> str:
        """What the weight vectors are, in messages: "4 module classes", "3 layer groups"."""
        return "module classes" if self.per == "module_classes" else "layer groups"

    def group_label(self, group: int) -> str:
        """One weight vector's name in messages: "module class attention", "layer group 1"."""
        if self.per == "module_classes":
            return f"module class {self.MODULE_CLASSES[group]}"
        return f"layer group {group}"

    def by_checkpoint(self, names: list[str], weights) -> dict[str, list[float]]:
        """Checkpoint name -> its weight in each group (one value per model)."""
        n = len(names)
        if len(weights) != n * self.n_groups:
            raise ValueError(f"{len(weights)} weights for {self.n_groups} group(s) x {n} checkpoints")
        return {name: [float(weights[g * n + i]) for g in range(self.n_groups)] for i, name in enumerate(names)}

    def mean_by_checkpoint(self, names: list[str], weights) -> dict[str, float]:
        """Checkpoint name -> its weight, averaged over the groups (each group counted once)."""
        return {name: sum(values) / len(values) for name, values in self.by_checkpoint(names, weights).items()}


class MergeSpec(Frozen):
    method: str = Field(default="linear", pattern=NAME_PATTERN)
    # True: weights are clipped at zero and renormalized to sum to 1 (the paper's simplex).
    # False: weights are used as given (task arithmetic when `base` is set).
    normalize: bool = True
    # Task arithmetic: merged = base + sum_i w_i * (x_i - base). Names a pool checkpoint.
    base: str | None = Field(default=None, pattern=NAME_PATTERN)
    # bf16/fp16 pools are summed in fp32 unless told otherwise; output keeps the pool dtype.
    accumulate: Literal["float32", "pool"] = "float32"
    # One weight per checkpoint, or one per (layer group, checkpoint) (see WeightLayout).
    weights: WeightLayout = WeightLayout()

    @model_validator(mode="after")
    def _base_means_unnormalized(self) -> "MergeSpec":
        if self.base is not None and self.normalize:
            raise ValueError("task arithmetic against a base uses unnormalized weights: set normalize: false")
        return self


TaskKind = Literal["lm_loss", "multiple_choice", "lm_eval"]
# lm_eval metrics where lower is better; recycle scores them as nats per unit (evaluator.lm_eval_task).
LM_EVAL_LOWER_IS_BETTER = frozenset({"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"})


class TaskSpec(Frozen):
    """One evaluation task; each task is one objective of the search."""

    name: str = Field(pattern=NAME_PATTERN)
    kind: TaskKind
    # JSONL. lm_loss: one document per line, {"text": ...}.
    # multiple_choice: {"context": ..., "choices": [...], "answer": index}.
    # lm_eval: an lm-evaluation-harness task YAML, or a folder of them with lm_eval_task set.
    path: str = Field(min_length=1, max_length=4096)
    # lm_eval only: the lm-eval task's name (required when path is a folder of task YAMLs)
    # and the metric scored per document: "acc", or "acc,<filter>" for one of its filters.
    lm_eval_task: str | None = Field(default=None, min_length=1, max_length=256)
    metric: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+(,[A-Za-z0-9_.\-]+)?$")
    # Documents are split (never windows) by a seeded hash into search and report splits.
    report_fraction: float = Field(default=0.3, gt=0.0, lt=1.0)
    split_seed: int = 0
    # How many windows / questions of each split are evaluated per trial (the same ones
    # every trial, so trials are compared on identical data).
    max_items: int = Field(default=64, ge=1, le=100_000)
    # The report split's count when it should differ (None: max_items). A larger held-out
    # set costs every trial but narrows the final comparison's confidence interval.
    report_max_items: int | None = Field(default=None, ge=1, le=100_000)
    seq_len: int = Field(default=256, ge=8, le=32_768)
    batch_size: int = Field(default=8, ge=1, le=4096)

    @model_validator(mode="after")
    def _lm_eval_fields(self) -> "TaskSpec":
        if self.kind != "lm_eval":
            given = [name for name in ("lm_eval_task", "metric") if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{' and '.join(given)}: only for tasks of kind lm_eval, not {self.kind}")
        elif self.lm_eval_task is None and not self.path.endswith((".yaml", ".yml")):
            raise ValueError("kind lm_eval: path must be a task YAML (.yaml), or a folder of them with lm_eval_task naming the task")
        return self

    @property
    def lm_eval_metric(self) -> str:
        """The lm_eval metric without its filter ("acc" unless told)."""
        return (self.metric or "acc").partition(",")[0]

    def items(self, split: str) -> int:
        """How many windows / questions of `split` ("search" or "report") are evaluated."""
        return self.report_max_items if split == "report" and self.report_max_items is not None else self.max_items

    @property
    def direction(self) -> Direction:
        if self.kind == "lm_eval":
            return Direction.minimize if self.lm_eval_metric in LM_EVAL_LOWER_IS_BETTER else Direction.maximize
        return Direction.minimize if self.kind == "lm_loss" else Direction.maximize

    @property
    def objective(self) -> Objective:
        return Objective(name=self.name, direction=self.direction)


StrategyName = Literal["tpe", "cmaes", "random"]


class Problem(Frozen):
    """What is searched: the tasks (one objective each), how weights merge, their bounds."""

    tasks: tuple[TaskSpec, ...] = Field(min_length=1, max_length=32)
    merge: MergeSpec = MergeSpec()
    # Unnormalized weights (task arithmetic) are searched in [0, max_weight]. Above 1 a task
    # vector is extrapolated: on the tiny demo pool only 1.05x the decimal specialist's own
    # vector (plus 0.05 of the others') beat it on every task. At least 1, so the singles
    # (weight 1) lie in the searched box. Refused on the simplex.
    max_weight: float = Field(default=1.0, ge=1.0, le=4.0)
    # Tasks no trial scores: nothing the search, the surrogate or the selection sees comes
    # from them. The verdict scores them held out, to show whether a merge chosen on the
    # objectives generalizes (the paper's held-out tasks).
    left_out_tasks: tuple[TaskSpec, ...] = Field(default=(), max_length=32)

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, tasks: tuple[TaskSpec, ...]) -> tuple[TaskSpec, ...]:
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError("task names must be unique")
        return tasks

    @model_validator(mode="after")
    def _left_out_tasks_are_others(self) -> "Problem":
        names = [t.name for t in (*self.tasks, *self.left_out_tasks)]
        if len(set(names)) != len(names):
            raise ValueError("a left-out task needs a name no other task has")
        return self

    @model_validator(mode="after")
    def _max_weight_needs_unnormalized(self) -> "Problem":
        if self.merge.normalize and self.max_weight != 1.0:
            raise ValueError("max_weight bounds unnormalized weights: with merge.normalize the weights are on the simplex")
        return self


class Algorithm(Frozen):
    """How the next trial is chosen: the proposal sources the driver asks, in this order
    (proposer.sources): baselines, greedy soup, dominance probes, the strategy (pre-screened
    by the surrogate or not)."""

    strategy: StrategyName = "tpe"
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    # Evaluate every single checkpoint, the uniform soup and a greedy soup first.
    baselines: bool = True
    # With baselines: also each checkpoint moved this far towards the uniform soup (0: none;
    # on the simplex mixed in, under task arithmetic added on top: see proposer.baselines).
    # Near a fine-tuned checkpoint the loss on its own task is flat while the others improve
    # at once, so a small move (0.1) can beat the checkpoint on every task.
    shrunk_singles: float = Field(default=0.0, ge=0.0, lt=1.0)
    # The strategy draws `candidates` points per ask and a quadratic surrogate of the tasks
    # picks the one most likely to add to the Pareto front (proposer.prescreen); CMA-ES
    # instead ranks its population with a surrogate of its loss (lq-CMA-ES).
    surrogate: bool = True
    # Points drawn per pre-screened ask. None: the strategy's own count (TPE 16, random 1,
    # i.e. random search is not pre-screened; CMA-ES is never pre-screened).
    candidates: int | None = Field(default=None, ge=1, le=1024)
    # With baselines: the last this many trials of the budget may probe the single checkpoints
    # no trial dominates yet, each along the line towards its most similar checkpoint
    # (proposer.dominance); trials no probe needs go to the strategy. 0: none.
    dominance_probes: int = Field(default=0, ge=0, le=1000)

    @model_validator(mode="before")
    @classmethod
    def _retired(cls, data):
        return drop_retired(data)


class Runtime(Frozen):
    """How long and how wide the search runs, and what each trial scores."""

    # Total trials, baselines included.
    budget: int = Field(default=48, ge=1, le=100_000)
    # Proposals kept in flight; the proposer asks for a new one as each result returns.
    concurrency: int = Field(default=2, ge=1, le=1024)
    # Score the held-out report split in every trial, so each result carries it (the API
    # shows the best trial's). False: a trial scores the search split alone and the verdict
    # (recycle.local.verdict) scores the held-out split of the trials it judges.
    report_every_trial: bool = True
    # A trial running longer than this is marked failed.
    trial_timeout_s: float = Field(default=1800.0, gt=0, le=7 * 24 * 3600)


GROUPS: dict[str, type[Frozen]] = {"problem": Problem, "algorithm": Algorithm, "runtime": Runtime}
# Options searches stored earlier may carry, which no longer do anything: dropped on load.
# exploit_every: a cadence of exploiting asks, replaced by the surrogate's uncertainty
# (proposer.prescreen; it changed no proposal on bench/search.py's synthetic tuning seeds 0-4).
RETIRED = frozenset({"exploit_every"})
# Field name -> its group: specs stored before the grouping (Redis, search.yaml files) are flat.
GROUP_OF: dict[str, str] = {name: group for group, model in GROUPS.items() for name in model.model_fields}


def drop_retired(data):
    """`data` without the RETIRED option names."""
    if not isinstance(data, dict) or not RETIRED & data.keys():
        return data
    return {name: value for name, value in data.items() if name not in RETIRED}


def group_fields(data):
    """Flat option names moved into their groups (a field given both ways is refused)."""
    data = drop_retired(data)
    if not isinstance(data, dict) or not GROUP_OF.keys() & data.keys():
        return data
    data = dict(data)
    for name in [n for n in data if n in GROUP_OF]:
        group = GROUP_OF[name]
        current = data.get(group) or {}
        current = current.model_dump(exclude_unset=True) if isinstance(current, BaseModel) else dict(current)
        if name in current:
            raise ValueError(f"{name!r} given both flat and in {group!r}")
        current[name] = data.pop(name)
        data[group] = current
    return data


class SearchOptions(Frozen):
    """Everything that defines a search except the pool (the API names the pool by id),
    in three groups. Flat specs (every field at the top level, as stored before the
    grouping) still load, and the flat names still read (`spec.budget`)."""

    problem: Problem
    algorithm: Algorithm = Algorithm()
    runtime: Runtime = Runtime()

    @model_validator(mode="before")
    @classmethod
    def _flat_names(cls, data):
        return group_fields(data)

    def model_copy(self, *, update=None, deep: bool = False):
        """As pydantic's, but flat names in `update` go to their group, validated."""
        if not update or not GROUP_OF.keys() & update.keys():
            return super().model_copy(update=update, deep=deep)
        data = self.model_dump()
        for name, value in update.items():
            if name in GROUP_OF:
                data[GROUP_OF[name]][name] = value
            else:
                data[name] = value
        return type(self).model_validate(data)

    @property
    def objectives(self) -> list[Objective]:
        return [t.objective for t in self.tasks]


def _flat(group: str, name: str) -> property:
    return property(lambda self: getattr(getattr(self, group), name), doc=f"{group}.{name}")


for _name, _group in GROUP_OF.items():
    setattr(SearchOptions, _name, _flat(_group, _name))


class SearchSpec(SearchOptions):
    pool: PoolSpec

    @model_validator(mode="after")
    def _base_in_pool(self) -> "SearchSpec":
        if self.merge.base is not None and self.merge.base not in self.pool.names:
            raise ValueError(f"merge base {self.merge.base!r} is not a checkpoint of the pool")
        return self

    @model_validator(mode="after")
    def _proposals_fit(self) -> "SearchSpec":
        total = self.merge.weights.n_groups * len(self.pool.checkpoints)
        if total > MAX_PROPOSAL_WEIGHTS:
            raise ValueError(f"{self.merge.weights.n_groups} {self.merge.weights.groups_word} x {len(self.pool.checkpoints)} checkpoints = "
                             f"{total} weights per proposal, more than {MAX_PROPOSAL_WEIGHTS}")
        return self
