"""Search efficiency: TPE, CMA-ES and random at equal budgets, over seeds.

Prints one JSON line per figure. Objectives:
  synthetic  cheap, known optimum: task t's loss is 1 + 3 * ||w - w*_t||^2 with a
             per-task optimum w*_t on the simplex, so the tasks conflict and the
             macro-average optimum is the mean of the w*_t.
  demo       the real demo pool (`--demo`), evaluated by the real Evaluator.
Per (objective, strategy, budget): hypervolume gain over the seeded baselines
(singles + uniform soup), best macro-average, the fraction of the gap between the
uniform soup and the best known macro-average closed, trials needed to close 95% of
it; mean and standard
deviation over seeds. Then each strategy's hypervolume gain relative to random's,
and TPE's ask latency after 1000 told trials.

    python bench/search.py                  # synthetic, budgets 32 and 64, 5 seeds
    python bench/search.py --demo --budgets 32 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import numpy as np

from contracts import CheckpointRef, PoolSpec, Proposal, SearchSpec, TaskSpec, TrialResult, TrialStatus
from proposer import MemoryStore, ParetoArchive, SearchDriver
from proposer.baselines import fixed_baselines
from proposer.space import WeightSpace

# (label, strategy, surrogate pre-screening): the strategies as shipped, random search,
# and the ablation without the surrogate (the strategies alone, told the macro-average).
VARIANTS = (("tpe", "tpe", True), ("cmaes", "cmaes", True), ("random", "random", False),
            ("tpe-unscreened", "tpe", False), ("cmaes-unscreened", "cmaes", False))


def emit(**fields) -> None:
    print(json.dumps({"bench": "search", **fields}), flush=True)


class Synthetic:
    name = "synthetic"

    def __init__(self, n_checkpoints: int = 8, n_tasks: int = 3, seed: int = 1234):
        rng = np.random.default_rng(seed)
        self.optima = rng.dirichlet(np.full(n_checkpoints, 0.5), size=n_tasks)
        pool = PoolSpec(name="synthetic", checkpoints=[CheckpointRef(name=f"c{i}", path=f"/c{i}") for i in range(n_checkpoints)])
        tasks = [TaskSpec(name=f"task{t}", kind="lm_loss", path="/none") for t in range(n_tasks)]
        self.pool, self.tasks = pool, tasks
        best = self.optima.mean(axis=0)
        self.best_known = float(np.mean([self._loss(best, t) for t in range(n_tasks)]))

    def _loss(self, w, t) -> float:
        return 1.0 + 3.0 * float(np.sum((np.asarray(w) - self.optima[t]) ** 2))

    def evaluate(self, proposal: Proposal) -> TrialResult:
        w = np.asarray(proposal.weights, dtype=float)
        w = w / w.sum()
        scores = {task.name: self._loss(w, t) for t, task in enumerate(self.tasks)}
        return TrialResult(proposal=proposal, status=TrialStatus.ok, scores=scores, report=scores)


class Demo:
    name = "demo"

    def __init__(self, cache: Path):
        from evaluator import Evaluator
        from recycle.demo.tiny_pool import build_demo_pool

        demo = build_demo_pool(cache, log=lambda *a, **k: None)
        self.pool, self.tasks = demo.pool, demo.tasks
        # The benchmark reads the search split only.
        self.evaluator = Evaluator(SearchSpec(pool=demo.pool, tasks=demo.tasks, report_every_trial=False))
        self.best_known = None  # the best macro-average seen in any run
        # The evaluator is deterministic, and every run shares its baselines: score each merge once.
        self._scored: dict[tuple[float, ...], TrialResult] = {}

    def evaluate(self, proposal: Proposal) -> TrialResult:
        result = self._scored.get(proposal.weights)
        if result is None:
            result = self._scored[proposal.weights] = self.evaluator.evaluate(proposal)
        return result.model_copy(update={"proposal": proposal})


def run_search(objective, strategy: str, budget: int, seed: int, concurrency: int = 4, scalarization: str = "mean",
               surrogate: bool = True, options: dict | None = None) -> dict:
    """One search with `concurrency` trials in flight, finishing in a seeded random order.
    `options`: further SearchSpec fields (e.g. exploit_every)."""
    spec = SearchSpec(pool=objective.pool, tasks=objective.tasks, strategy=strategy, budget=budget,
                      concurrency=concurrency, seed=seed, surrogate=surrogate, **(options or {}))
    store = MemoryStore()
    store.create_search("bench", spec)
    driver = SearchDriver("bench", spec, store, scalarization=scalarization)
    order = random.Random(seed)
    in_flight: list[Proposal] = []
    best_so_far: list[float] = []
    while not driver.finished:
        in_flight += driver.propose(concurrency - len(in_flight))
        proposal = in_flight.pop(order.randrange(len(in_flight)))
        result = objective.evaluate(proposal)
        driver.record(result)
        if result.status is TrialStatus.ok:
            value = driver.normalization.macro(result.scores)
            best_so_far.append(min(value, best_so_far[-1]) if best_so_far else value)
    results = store.results("bench")
    summary = driver.summary()
    baselines = ParetoArchive(spec.objectives)
    for result in results:
        if result.proposal.number < len(fixed_baselines(WeightSpace(spec), spec.shrunk_singles)):
            baselines.add(result)
    uniform = next(r for r in results if r.proposal.source == "uniform")
    return {
        "hv_gain": summary["hypervolume"] - baselines.hypervolume(summary["reference_point"], driver.normalization.losses),
        "best_macro": best_so_far[-1],
        "uniform_macro": driver.normalization.macro(uniform.scores),
        "curve": best_so_far,
    }


def trials_to_close(curve: list[float], start: float, best: float, fraction: float = 0.95) -> int | None:
    target = start - fraction * (start - best)
    return next((i + 1 for i, value in enumerate(curve) if value <= target + 1e-12), None)


def gap_closed_by(best: float, start: float, best_known: float) -> float:
    """Fraction of the way from the uniform soup's macro-average to the best known one."""
    return (start - best) / (start - best_known) if start > best_known else 1.0


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def compare(objective, budgets: list[int], seeds: int, scalarization: str, variants=VARIANTS,
            options: dict | None = None) -> None:
    options = options or {}
    runs = {(label, b): [run_search(objective, strategy, b, seed, scalarization=scalarization, surrogate=surrogate,
                                    options=options)
                         for seed in range(seeds)]
            for b in budgets for label, strategy, surrogate in variants}
    best_known = objective.best_known
    if best_known is None:
        best_known = min(r["best_macro"] for rs in runs.values() for r in rs)
    for budget in budgets:
        gains = {}
        for strategy, _, _ in variants:
            rs = runs[strategy, budget]
            gains[strategy] = mean_std([r["hv_gain"] for r in rs])
            reached = [trials_to_close(r["curve"], r["uniform_macro"], best_known) for r in rs]
            gap_closed = mean_std([gap_closed_by(r["best_macro"], r["uniform_macro"], best_known) for r in rs])
            emit(objective=objective.name, strategy=strategy, budget=budget, seeds=seeds, scalarization=scalarization,
                 **options,
                 hv_gain_mean=gains[strategy][0], hv_gain_std=gains[strategy][1],
                 best_macro_mean=mean_std([r["best_macro"] for r in rs])[0],
                 best_macro_std=mean_std([r["best_macro"] for r in rs])[1], best_known_macro=best_known,
                 uniform_macro=rs[0]["uniform_macro"], gap_closed_mean=gap_closed[0], gap_closed_std=gap_closed[1],
                 trials_to_95pct=[t for t in reached], reached_95pct=sum(t is not None for t in reached))
        for strategy in (label for label, _, _ in variants if label != "random"):
            ratio = gains[strategy][0] / gains["random"][0] if gains["random"][0] > 0 else None
            emit(objective=objective.name, figure="hv_gain_ratio_vs_random", strategy=strategy, budget=budget,
                 **options, value=ratio, target=1.2)


def ask_latency(told: int = 1000, asks: int = 20) -> None:
    """TPE's propose() time once `told` results are in (the proposer's hot path)."""
    objective = Synthetic(n_checkpoints=16)
    spec = SearchSpec(pool=objective.pool, tasks=objective.tasks, strategy="tpe", budget=told + asks, seed=0)
    store = MemoryStore()
    store.create_search("latency", spec)
    driver = SearchDriver("latency", spec, store)
    while driver.summary()["done"] < told:
        for proposal in driver.propose(1):
            driver.record(objective.evaluate(proposal))
    times = []
    for _ in range(asks):
        started = time.perf_counter()
        [proposal] = driver.propose(1)
        times.append(time.perf_counter() - started)
        driver.record(objective.evaluate(proposal))
    emit(figure="tpe_ask_latency_ms", told=told, median=1000 * statistics.median(times),
         p95=1000 * sorted(times)[int(0.95 * (len(times) - 1))], target_ms=50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--demo", action="store_true", help="also on the real demo pool (slower)")
    parser.add_argument("--cache", default=None, help="demo pool folder (default: the one `recycle demo` uses)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--scalarization", choices=["mean", "parego"], default="mean")
    parser.add_argument("--variants", nargs="+", choices=[label for label, _, _ in VARIANTS],
                        default=[label for label, _, _ in VARIANTS], help="random is always run: the ratios need it")
    parser.add_argument("--exploit-every", type=int, default=None, help="SearchSpec.exploit_every (default: its default)")
    parser.add_argument("--dominance-probes", type=int, default=None,
                        help="SearchSpec.dominance_probes, for every variant random included (default: its default)")
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()
    variants = [v for v in VARIANTS if v[0] in args.variants or v[0] == "random"]
    given = {"exploit_every": args.exploit_every, "dominance_probes": args.dominance_probes}
    options = {name: value for name, value in given.items() if value is not None}
    if not args.skip_synthetic:
        compare(Synthetic(), args.budgets, args.seeds, args.scalarization, variants, options)
    if args.demo:
        from recycle.settings import Settings

        compare(Demo(Path(args.cache) if args.cache else Settings().pool_cache_dir / "demo"), args.budgets, args.seeds,
                args.scalarization, variants, options)
    if not args.skip_latency:
        ask_latency()


if __name__ == "__main__":
    main()
