"""Search efficiency: recycle's searches against honest peers, same budgets, seeds and baselines.

Every peer (bench/search_peers.py) runs through recycle's SearchDriver: the same fixed
baselines (singles, uniform soup) and greedy soup first, 4 trials in flight finishing in a
seeded order, results told on the normalized scale (proposer.normalize). Objectives
(bench/search_objectives.py, chosen with `--objectives`): a synthetic response surface that is
not quadratic; the tiny demo pool (9 specialists, built once into .cache/bench-search/); the
recycling pool of the verdict (17 generalists, report pool seed 3 of bench/science.py). Budgets
32 and 64 come from one 64-trial run per seed: nothing a peer proposes depends on the budget
(no dominance probes).

Seeds. TUNING_SEEDS (0-4) are those the shipped choices were made on (candidate counts, the
surrogate's alpha selection and acquisition, dropping the exploit cadence: see TUNING in
bench/search_report.py); every figure reported here uses REPORT_SEEDS, disjoint from them.

Figures per (objective, peer, budget), JSON lines with mean and 95% bootstrap interval over seeds:
  hv_gain_vs_random   hypervolume gained over the fixed baselines' (normalized objectives,
                      reference 1.1 on each), as a ratio of means to random search's (paired by seed)
  best_macro_heldout  the held-out normalized macro-average of the trial with the best search-split
                      one (lower is better; 0 = the best single on each task, 1 = the worst)
  trials_to_95pct     trials until the best search-split macro closed 95% of the gap from the
                      uniform soup to the best any peer found with that seed (median over the
                      seeds that reached it within the budget; reached: how many did)
  ask_ms_p50/p95      time of a proposal by the peer's strategy (baselines excluded)
Then the default's ask latency once 1000 results are told (16 checkpoints; target 50 ms p95),
and the design figures of bench/search_design.py; bench/search_report.py writes the Markdown.

    python bench/search.py --quick                        # CI: synthetic, 3 seeds, 32 trials (~2 min)
    python bench/search.py --objectives synthetic tiny-pool recycling-pool --docs docs/results/search.md
    python bench/search.py --summarize --docs docs/results/search.md   # from the runs stored so far

Every finished run is appended to --runs (a JSON line each), so an interrupted benchmark is
resumed, or summarized, from there; objectives may run as separate processes on one --runs file
(one line per write, appended).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

# Before numpy loads: the surrogate's SVDs are small, and OpenBLAS's thread pool on a busy
# machine made them ~10x slower (0.9 s instead of ~0.1 s per ask at 200 trials, 2 shared cores).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import commit_of  # noqa: E402
from search_design import simplex_coordinates, tpe_candidates  # noqa: E402
from search_objectives import RecyclingPool, Synthetic, TinyPool  # noqa: E402
from search_peers import PEERS, OptunaStrategy, Peer  # noqa: E402
from search_report import write_docs  # noqa: E402

from contracts import SearchSpec, TrialStatus  # noqa: E402
from proposer import MemoryStore, ParetoArchive, SearchDriver, best_by_macro  # noqa: E402
from proposer.baselines import fixed_baselines  # noqa: E402
from proposer.space import WeightSpace  # noqa: E402

TUNING_SEEDS = range(0, 5)
REPORT_SEEDS = range(100, 120)
POOL_REPORT_SEEDS = range(100, 105)  # both pools
RECYCLING_POOL_SEED = 3  # bench/science.py's report pool: nothing of the search was tuned on it
BUDGETS = (32, 64)
CONCURRENCY = 4
RESAMPLES = 2000
ROOT = Path(__file__).resolve().parent.parent


def run_search(objective, peer: Peer, budget: int, seed: int) -> dict:
    """One search; per budget, what the figures need."""
    spec = SearchSpec(pool=objective.pool, tasks=objective.tasks, algorithm={"seed": seed, **peer.options},
                      runtime={"budget": budget, "concurrency": CONCURRENCY})
    store = MemoryStore()
    store.create_search("bench", spec)
    strategy, driver = None, None
    if peer.sampler:
        def vector_of(number: int) -> list[float]:
            return driver.normalization.losses(driver.history.results[number].scores)

        strategy = OptunaStrategy(WeightSpace(spec).dim, seed, peer.sampler, vector_of, len(spec.objectives))
    driver = SearchDriver("bench", spec, store, strategy=strategy)
    order = random.Random(seed)
    in_flight, ask_ms = [], []
    while not driver.finished:
        started = time.perf_counter()
        made = driver.propose(CONCURRENCY - len(in_flight))
        elapsed = 1000 * (time.perf_counter() - started)
        if len(made) == 1 and not made[0].source.is_baseline:
            ask_ms.append(elapsed)
        in_flight += made
        driver.record(objective.evaluate(in_flight.pop(order.randrange(len(in_flight)))))
    return measure(objective, spec, driver, store.results("bench"), ask_ms)


def measure(objective, spec: SearchSpec, driver: SearchDriver, results, ask_ms: list[float]) -> dict:
    scale = driver.normalization
    ok = sorted((r for r in results if r.status is TrialStatus.ok), key=lambda r: r.proposal.number)
    n_fixed = len(fixed_baselines(WeightSpace(spec)))

    def hypervolume(rs) -> float:
        archive = ParetoArchive(spec.objectives)
        for r in rs:
            archive.add(r)
        return archive.hypervolume(scale.reference, scale.losses)

    base = hypervolume([r for r in ok if r.proposal.number < n_fixed])
    macros = {r.proposal.number: scale.macro(r.scores) for r in ok}
    curve = [min((m for n, m in macros.items() if n <= k), default=None) for k in range(spec.budget)]
    uniform = next(r for r in ok if r.proposal.source.kind == "uniform")
    figures = {}
    for budget in (b for b in BUDGETS if b <= spec.budget):
        within = [r for r in ok if r.proposal.number < budget]
        best = best_by_macro(within, scale)
        figures[str(budget)] = {"hv_gain": hypervolume(within) - base,
                                "best_macro_heldout": scale.macro(objective.held_out(best.proposal))}
    return {"figures": figures, "curve": curve, "uniform_macro": scale.macro(uniform.scores), "ask_ms": ask_ms}


def bootstrap(values, statistic, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Statistic of the seeds and its 95% percentile interval over seeds resampled with replacement;
    `values`: per seed, a tuple the statistic reads column by column."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    draws = [statistic(values[rng.integers(0, len(values), len(values))]) for _ in range(resamples)]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return {"mean": float(statistic(values)), "lo": float(lo), "hi": float(hi)}


def trials_to_close(curve, start: float, best: float, fraction: float = 0.95) -> int | None:
    target = start - fraction * (start - best)
    return next((k + 1 for k, value in enumerate(curve) if value is not None and value <= target + 1e-12), None)


def summarize(runs: list[dict]) -> list[dict]:
    """One figure line per (objective, peer, budget), for the seeds every peer of the objective has."""
    lines = []
    for objective in dict.fromkeys(r["objective"] for r in runs):
        mine = [r for r in runs if r["objective"] == objective]
        peers = list(dict.fromkeys(r["peer"] for r in mine))
        seeds = sorted(set.intersection(*({r["seed"] for r in mine if r["peer"] == p} for p in peers)))
        by = {(r["peer"], r["seed"]): r for r in mine if r["seed"] in seeds}
        # Per seed, the best macro any peer found (runs of one seed share baselines and, on the
        # synthetic surface, the noise).
        target = {s: min(v for p in peers for v in by[p, s]["curve"] if v is not None) for s in seeds}
        budgets = sorted({int(b) for r in by.values() for b in r["figures"]})
        for budget in budgets:
            random_gain = [by["random", s]["figures"][str(budget)]["hv_gain"] for s in seeds]
            for peer in peers:
                rs = [by[peer, s] for s in seeds]
                gain = [r["figures"][str(budget)]["hv_gain"] for r in rs]
                reached = [trials_to_close(r["curve"][:budget], r["uniform_macro"], target[s]) for r, s in zip(rs, seeds)]
                asks = [t for r in rs for t in r["ask_ms"]]
                lines.append({
                    "objective": objective, "strategy": peer, "budget": budget, "seeds": f"{seeds[0]}-{seeds[-1]}"
                    if seeds == list(range(seeds[0], seeds[-1] + 1)) else seeds, "n_seeds": len(seeds),
                    "hv_gain_vs_random": bootstrap(list(zip(gain, random_gain)),
                                                   lambda v: v[:, 0].mean() / v[:, 1].mean()),
                    "best_macro_heldout": bootstrap([[r["figures"][str(budget)]["best_macro_heldout"]] for r in rs],
                                                    lambda v: v[:, 0].mean()),
                    "trials_to_95pct": {"median": statistics.median(t for t in reached if t) if any(reached) else None,
                                        "reached": sum(t is not None for t in reached)},
                    "ask_ms_p50": float(np.percentile(asks, 50)) if asks else None,
                    "ask_ms_p95": float(np.percentile(asks, 95)) if asks else None,
                })
    return lines


def effort(runs: list[dict], lines: list[dict]) -> dict[str, dict]:
    """Per objective of OBJECTIVES: stored runs, their wall minutes, the seeds every peer has (from
    summarize's `lines`), the commits run."""
    out = {}
    for name in OBJECTIVES:
        mine = [r for r in runs if r["objective"] == name]
        whole = max((line["n_seeds"] for line in lines if line["objective"] == name), default=0)
        out[name] = {"runs": len(mine), "minutes": sum(r["seconds"] for r in mine) / 60, "whole_seeds": whole,
                     "commits": sorted({r.get("commit", "not recorded") for r in mine})}
    return out


def ask_latency(told: int = 1000, asks: int = 20) -> dict:
    """The default's propose() time once `told` results are in (the proposer's hot path)."""
    objective = Synthetic(n_checkpoints=16)
    spec = SearchSpec(pool=objective.pool, tasks=objective.tasks, runtime={"budget": told + asks})
    store = MemoryStore()
    store.create_search("latency", spec)
    driver = SearchDriver("latency", spec, store)
    times = []
    for _ in range(told + asks):
        started = time.perf_counter()
        [proposal] = driver.propose(1)
        times.append(1000 * (time.perf_counter() - started))
        driver.record(objective.evaluate(proposal))
    last = times[told:]
    return {"figure": "ask_latency", "strategy": "default", "checkpoints": 16, "told": told,
            "ask_ms_p50": float(np.percentile(last, 50)), "ask_ms_p95": float(np.percentile(last, 95)), "target_ms": 50}


def load_runs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def benchmark(objective, peers, seeds, budget: int, runs_path: Path, runs: list[dict]) -> None:
    """Seed by seed, every peer (so a stopped benchmark has whole seeds); runs already stored are skipped.
    Each run records the commit it ran (runs resumed later may come from other code: check before mixing)."""
    commit = commit_of(ROOT)
    done = {(r["objective"], r["peer"], r["seed"], r["budget"]) for r in runs}
    for seed in seeds:
        for peer in peers:
            if (objective.name, peer.label, seed, budget) in done:
                continue
            started = time.perf_counter()
            record = {"objective": objective.name, "peer": peer.label, "seed": seed, "budget": budget, "commit": commit,
                      **run_search(objective, peer, budget, seed), "seconds": time.perf_counter() - started}
            runs.append(record)
            with runs_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps({"run": f"{objective.name}/{peer.label}/seed {seed}", "seconds": round(record["seconds"], 1),
                              **{f"hv_gain_{b}": round(v["hv_gain"], 4) for b, v in record["figures"].items()}}),
                  file=sys.stderr, flush=True)


# name -> (the objective, from the arguments; its report seeds)
OBJECTIVES = {
    "synthetic": (lambda args: Synthetic(), REPORT_SEEDS),
    "tiny-pool": (lambda args: TinyPool(Path(args.pool_cache)), POOL_REPORT_SEEDS),
    "recycling-pool": (lambda args: RecyclingPool(RECYCLING_POOL_SEED), POOL_REPORT_SEEDS),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI: synthetic only, 3 report seeds, 32 trials")
    parser.add_argument("--objectives", nargs="+", choices=list(OBJECTIVES), default=["synthetic"],
                        help="the pools are slow: real merges (recycling-pool ~2 s a trial on one core)")
    parser.add_argument("--pool-cache", default=str(ROOT / ".cache" / "bench-search" / "demo"), help="the tiny pool's")
    parser.add_argument("--peers", nargs="+", choices=[p.label for p in PEERS], default=[p.label for p in PEERS],
                        help="random always runs: the ratios need it")
    parser.add_argument("--runs", default=None, help="JSON lines of finished runs (default: docs/results/search-runs.jsonl; "
                        "--quick: .cache/bench-search/runs-quick.jsonl)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="only these of each objective's report seeds (processes side by side split the seeds)")
    parser.add_argument("--summarize", action="store_true", help="only summarize the stored runs")
    parser.add_argument("--docs", default=None, help="write the figures as markdown here")
    args = parser.parse_args()
    peers = [p for p in PEERS if p.label in args.peers or p.label == "random"]
    for name in args.objectives:
        if args.seeds and not set(args.seeds) <= set(seeds := OBJECTIVES[name][1]):
            parser.error(f"{name}'s report seeds are {seeds[0]}-{seeds[-1]}; --seeds {args.seeds} is not among them")
    # The full benchmark's runs are kept beside its document (the figures can be summarized again
    # from a fresh clone); --quick's in the cache.
    runs_path = Path(args.runs or (ROOT / ".cache" / "bench-search" / "runs-quick.jsonl" if args.quick
                                   else ROOT / "docs" / "results" / "search-runs.jsonl"))
    runs_path.parent.mkdir(parents=True, exist_ok=True)
    runs = load_runs(runs_path)
    if not args.summarize:
        if args.quick:
            benchmark(Synthetic(), peers, REPORT_SEEDS[:3], 32, runs_path, runs)
        else:
            for name in args.objectives:
                make, seeds = OBJECTIVES[name]
                benchmark(make(args), peers, [s for s in seeds if not args.seeds or s in args.seeds],
                          max(BUDGETS), runs_path, runs)
        runs = load_runs(runs_path)  # with what other processes on this file have added
    lines = summarize(runs)
    for line in lines:
        print(json.dumps(line), flush=True)
    extras_path = runs_path.with_name(runs_path.stem + "-extras.json")
    if args.summarize:
        extras = json.loads(extras_path.read_text()) if extras_path.exists() else {}
    else:
        extras = {"latency": ask_latency(told=200 if args.quick else 1000),
                  "design": {"simplex": simplex_coordinates(), "tpe": None if args.quick else tpe_candidates()}}
        extras_path.write_text(json.dumps(extras))
    for figure in [extras.get("latency"), *extras.get("design", {}).get("simplex", []), extras.get("design", {}).get("tpe")]:
        if figure:
            print(json.dumps(figure), flush=True)
    if args.docs:
        seeds = {"tuning": TUNING_SEEDS, "report": REPORT_SEEDS, "pool_report": POOL_REPORT_SEEDS,
                 "recycling_pool": RECYCLING_POOL_SEED}
        write_docs(Path(args.docs), lines, extras, "python bench/search.py " + " ".join(sys.argv[1:]), seeds,
                   effort(runs, lines))


if __name__ == "__main__":
    main()
