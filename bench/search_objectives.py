"""What bench/search.py searches: a synthetic response surface, the tiny demo pool and the
recycling pool.

Each objective gives a pool and tasks, `evaluate(proposal)` (search split, what the
search sees) and `held_out(proposal)` (the report split's scores, what the best trial
is judged by; never shown to a search).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from contracts import CheckpointRef, PoolSpec, Proposal, SearchSpec, TaskSpec, TrialResult, TrialStatus


class Synthetic:
    """Not quadratic, so the surrogate's model class (a quadratic) is only an approximation.

    Per task t, with w normalized to the simplex:
        loss_t(w) = sum_i w_i s_ti                         linear blend of the singles' losses
                    - A_t tanh(B sum_{i<j} w_i w_j M_ij)   saturating gain of mixing compatible checkpoints
                    - D_t (sqrt(w_k(t)) - w_k(t))          a little of task t's specialist k(t) helps most
    Singles: each checkpoint is a specialist of one task (loss 1.0 there, 1.6-2.0 elsewhere);
    M_ij ~ U(-0.5, 1) (some pairs interfere). The search split adds noise of sd NOISE,
    fixed per weight vector (a re-evaluation gives the same score, as on a real pool); the
    held-out split is noiseless. The parameters are drawn, not fitted to a real pool.
    """

    name = "synthetic"
    NOISE = 0.01
    B = 2.0

    def __init__(self, n_checkpoints: int = 8, n_tasks: int = 3, seed: int = 1234):
        rng = np.random.default_rng(seed)
        self.own = np.arange(n_checkpoints) % n_tasks  # checkpoint i specializes in task own[i]
        self.singles = rng.uniform(1.6, 2.0, size=(n_tasks, n_checkpoints))
        self.singles[self.own, np.arange(n_checkpoints)] = 1.0 + rng.uniform(0.0, 0.1, n_checkpoints)
        upper = np.triu(rng.uniform(-0.5, 1.0, size=(n_checkpoints, n_checkpoints)), 1)
        self.mixing = upper + upper.T
        self.gain = rng.uniform(0.3, 0.6, n_tasks)
        self.specialist_gain = rng.uniform(0.2, 0.4, n_tasks)
        self.pool = PoolSpec(name="synthetic", checkpoints=[CheckpointRef(name=f"c{i}", path=f"/c{i}")
                                                            for i in range(n_checkpoints)])
        self.tasks = [TaskSpec(name=f"task{t}", kind="lm_loss", path="/none") for t in range(n_tasks)]
        # Task t's specialist with the lowest single loss.
        self.specialist = [int(np.argmin(np.where(self.own == t, self.singles[t], np.inf))) for t in range(n_tasks)]

    def losses(self, weights) -> np.ndarray:
        w = np.asarray(weights, dtype=float)
        w = w / w.sum()
        blend = self.singles @ w
        pairs = 0.5 * (w @ self.mixing @ w)  # sum over i < j of w_i w_j M_ij
        mixing = np.tanh(self.B * pairs)
        special = np.sqrt(w[self.specialist]) - w[self.specialist]
        return blend - self.gain * mixing - self.specialist_gain * special

    def _noise(self, weights) -> np.ndarray:
        digest = hashlib.sha256(np.asarray(weights, dtype=float).tobytes()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little")).normal(0.0, self.NOISE, len(self.tasks))

    def evaluate(self, proposal: Proposal) -> TrialResult:
        values = self.losses(proposal.weights) + self._noise(proposal.weights)
        return TrialResult(proposal=proposal, status=TrialStatus.ok,
                           scores={t.name: float(v) for t, v in zip(self.tasks, values)})

    def held_out(self, proposal: Proposal) -> dict[str, float]:
        return {t.name: float(v) for t, v in zip(self.tasks, self.losses(proposal.weights))}


class PoolObjective:
    """A real pool: every evaluation merges the checkpoints and scores the merge (search split),
    `held_out` scores the held-out split. Evaluations are deterministic and every run shares its
    baselines, so each distinct merge is scored once per process."""

    name = "pool"

    def __init__(self, pool: PoolSpec, tasks: list[TaskSpec]):
        import torch

        from evaluator import Evaluator

        # One thread: on a shared machine torch's spinning thread pool costs more than it gains.
        torch.set_num_threads(1)
        self.pool, self.tasks = pool, tasks
        self._search = Evaluator(SearchSpec(pool=pool, tasks=tasks, report_every_trial=False))
        self._both = Evaluator(SearchSpec(pool=pool, tasks=tasks, report_every_trial=True))
        self._scored: dict[tuple[float, ...], TrialResult] = {}
        self._held_out: dict[tuple[float, ...], dict[str, float]] = {}

    def evaluate(self, proposal: Proposal) -> TrialResult:
        result = self._scored.get(proposal.weights)
        if result is None:
            result = self._scored[proposal.weights] = self._search.evaluate(proposal)
        return result.model_copy(update={"proposal": proposal})

    def held_out(self, proposal: Proposal) -> dict[str, float]:
        if proposal.weights not in self._held_out:
            self._held_out[proposal.weights] = dict(self._both.evaluate(proposal).report)
        return self._held_out[proposal.weights]


class TinyPool(PoolObjective):
    """The tiny demo pool (recycle.demo.tiny_pool, scale "demo"): 9 specialists of 3 tasks, built once
    into `cache`. The pool and task specs are kept in `cache/bench-pool.json`, so later runs reuse
    the checkpoints even after the demo's training code changes (which would rebuild them)."""

    name = "tiny-pool"

    def __init__(self, cache: Path):
        manifest = cache / "bench-pool.json"
        if not manifest.exists():
            from recycle.demo.tiny_pool import build_demo_pool

            demo = build_demo_pool(cache, scale="demo", seed=0)
            manifest.write_text(json.dumps({"pool": demo.pool.model_dump(mode="json"),
                                            "tasks": [t.model_dump(mode="json") for t in demo.tasks]}))
        stored = json.loads(manifest.read_text())
        super().__init__(PoolSpec.model_validate(stored["pool"]), [TaskSpec.model_validate(t) for t in stored["tasks"]])


class RecyclingPool(PoolObjective):
    """The verdict's pool (recycle.demo.recycling_pool: 16 generalist fine-tunes and their base,
    4-layer GPT-2s; python and prose next-token loss and word-swap multiple choice; its left-out
    task is not searched), built (or found) where `recycle demo` caches it. `pool_seed` 3 is a
    report pool of bench/science.py: nothing of the search was tuned on it."""

    name = "recycling-pool"

    def __init__(self, pool_seed: int):
        from recycle.demo.pools import build_demo
        from recycle.settings import Settings

        demo = build_demo("recycling", Settings().pool_cache_dir, pool_seed, log=lambda *a: None)
        super().__init__(demo.pool, demo.tasks)
        self.pool_seed = pool_seed
