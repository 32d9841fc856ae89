"""Does the shipped search's merge beat the paper's baselines on held-out data? (`make bench-science`)

The science benchmark of issue 18: on the recycling pool (recycle.demo.recycling_pool: 16
generalist checkpoints and their base; python, prose and a multiple-choice objective; decimal
left out), each strategy searches 64 trials with the same baselines, and the held-out verdict
(recycle.local.verdict: a paired bootstrap over held-out groups, Holm-corrected over the run's
comparisons) compares its merge with the best single, the uniform soup and the greedy soup, and
with the greedy soup on the left-out task.

Strategies: "default" is exactly what `recycle demo` runs (recycle.commands.runs.demo_spec:
TPE, its candidates picked by the surrogate's lower confidence bound, dominance probes); "tpe" and "cmaes" are the
strategies alone (no surrogate, no probes); "random" is random search. Every one evaluates the
same baselines first (singles, uniform soup, greedy soup) out of the same budget.
Seeds: pool seed 0 and search seeds 0-4 are the dev seeds this benchmark, the verdict and the
pool's multiple-choice task were built on. Report seeds are used once per version of the method
and then retired (BURNED_REPORT_SEEDS says which version they measured): the current ones are
pool seeds 3 and 4 (other training runs and another search/held-out split of other sources) and
search seeds 300-304, never used for anything else. Nothing of the method was tuned on this benchmark.

Prints one JSON line per (strategy, pool seed, search seed), then one summary line per strategy.
Identical merges (the baselines every run evaluates) are scored once per pool: evaluation is
deterministic, so the numbers are the same; it only saves time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe as machine  # noqa: E402
from contracts import TrialResult  # noqa: E402
from recycle.commands.runs import demo_spec  # noqa: E402
from recycle.demo.pools import build_demo  # noqa: E402
from recycle.local.heldout import HeldOutScorer  # noqa: E402
from recycle.local.runtime import EvaluatorPool, run_search  # noqa: E402
from recycle.local.verdict import held_out_verdict  # noqa: E402
from recycle.settings import Settings  # noqa: E402

DEV_POOL_SEEDS, DEV_SEARCH_SEEDS = (0,), (0, 1, 2, 3, 4)
REPORT_POOL_SEEDS, REPORT_SEARCH_SEEDS = (3, 4), (300, 301, 302, 303, 304)
# Report seeds that measured an earlier version once and may not measure another: (pools, searches, what).
BURNED_REPORT_SEEDS = (
    ((1, 2), (100, 101, 102, 103, 104), "2026-12-06, first version: the multiple-choice task asked for the next line "
     "against lines of other sources (the singles' accuracies spread over 0.9 binomial standard errors: noise), and "
     "the verdict picked the best single on the held-out split (a winner's curse in the single's favour)"),
)
# name -> (strategy, options changed from the demo's search)
STRATEGIES = {
    "default": ("tpe", {}),
    "random": ("random", {"surrogate": False, "dominance_probes": 0}),
    "cmaes": ("cmaes", {"surrogate": False, "dominance_probes": 0}),
    "tpe": ("tpe", {"surrogate": False, "dominance_probes": 0}),
}
COMPARISONS = {"vs_best_single": "best single", "vs_uniform": "uniform soup", "vs_greedy": "greedy soup"}


class MemoEvaluators(EvaluatorPool):
    """An EvaluatorPool that scores each distinct weight vector once (runs on one pool repeat the baselines)."""

    def __init__(self, spec, device):
        super().__init__(spec, device)
        self.memo: dict[tuple[float, ...], TrialResult] = {}

    def evaluate(self, proposal) -> TrialResult:
        known = self.memo.get(proposal.weights)
        if known is not None:
            return known.model_copy(update={"proposal": proposal})
        result = super().evaluate(proposal)
        if result.status.value == "ok":
            self.memo[proposal.weights] = result
        return result


def interval(decision) -> dict:
    return {"diff": decision.test.diff, "lo": decision.low, "hi": decision.high, "p_holm": decision.p_holm,
            "significant": decision.significant}


def search_and_judge(name, spec, search_id, evaluators, scorer, out_dir, resamples):
    """One search (its trials in out_dir) and the held-out verdict of its merge: (results, verdict)."""
    trials = out_dir / f"{search_id}.jsonl"
    trials.unlink(missing_ok=True)
    driver = run_search(spec, search_id, trials, workers=2, evaluators=evaluators)
    results = driver.store.results(search_id)
    return results, held_out_verdict({name: (spec, results)}, resamples=resamples, scorer=scorer)


def one_run(name, spec, pool_seed, search_seed, evaluators, scorer, out_dir, resamples) -> dict:
    started = time.perf_counter()
    _, verdict = search_and_judge(name, spec, f"science-{name}-p{pool_seed}-s{search_seed}", evaluators, scorer,
                                  out_dir, resamples)
    merge = verdict.merges[0]
    by_baseline = verdict.comparisons[merge.label]
    [left_out] = verdict.left_out.get(merge.label, {}).values() or [None]
    point, confident, singles = verdict.dominated_counts()
    return {
        "strategy": name, "pool_seed": pool_seed, "search_seed": search_seed, "budget": spec.budget,
        **{key: interval(by_baseline[label]) for key, label in COMPARISONS.items()},
        "left_out_task": interval(left_out) if left_out else None,
        "weights_above_001": merge.weights_used, "checkpoints": len(spec.pool.names),
        "held_out_macro": {e.label: e.held_out_macro for e in verdict.entries},
        "dominated": {"in_point_estimate": point, "with_confidence": confident, "singles": singles},
        "groups": verdict.groups, "family_size": verdict.family_size,
        "bootstrap_unit": "group", "correction": "holm", "seconds": round(time.perf_counter() - started, 1),
    }


def summary(name: str, lines: list[dict]) -> dict:
    """In how many runs each interval lies above 0 (the merge better), below 0, or spans it."""
    runs = [line for line in lines if line["strategy"] == name]

    def count(key):
        values = [line[key] for line in runs if line[key] is not None]
        return {"above_0": sum(v["lo"] > 0 for v in values), "below_0": sum(v["hi"] < 0 for v in values),
                "runs": len(values), "mean_diff": sum(v["diff"] for v in values) / max(1, len(values))}

    return {"summary": name, **{key: count(key) for key in (*COMPARISONS, "left_out_task")},
            "weights_above_001_mean": sum(r["weights_above_001"] for r in runs) / max(1, len(runs))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 pool seed, 2 search seeds, 24 trials (for CI)")
    parser.add_argument("--dev", action="store_true", help="the dev seeds instead of the report seeds")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--pool-seeds", help="only these pool seeds, comma separated (e.g. one process per pool seed)")
    parser.add_argument("--scale", default="demo", help="pool scale: demo (the benchmark) or test (a smoke run)")
    parser.add_argument("--out", type=Path, default=Path(".cache/bench-science"))
    parser.add_argument("--write", type=Path, help="also write the figures as Markdown (docs/results/science.md)")
    parser.add_argument("--from-lines", type=Path, help="summarize the JSON lines of an earlier run instead of running")
    args = parser.parse_args(argv)
    if args.from_lines:
        lines = [json.loads(x) for x in args.from_lines.read_text().splitlines() if x.strip() and '"strategy"' in x]
        names = list(dict.fromkeys(line["strategy"] for line in lines))
        summaries = [summary(name, lines) for name in names]
        for line in summaries:
            print(json.dumps(line))
        if args.write:
            write_markdown(args.write, lines, summaries, " ".join(sys.argv))
        return 0
    pool_seeds, search_seeds = (DEV_POOL_SEEDS, DEV_SEARCH_SEEDS) if args.dev else (REPORT_POOL_SEEDS, REPORT_SEARCH_SEEDS)
    budget, resamples = 64, 10_000
    if args.quick:
        pool_seeds, search_seeds, budget, resamples = pool_seeds[:1], search_seeds[:2], 24, 2_000
    if args.pool_seeds:
        pool_seeds = tuple(int(x) for x in args.pool_seeds.split(","))
    names = [n.strip() for n in args.strategies.split(",") if n.strip()]
    unknown = set(names) - STRATEGIES.keys()
    if unknown:
        parser.error(f"unknown strategies {sorted(unknown)}; known: {', '.join(STRATEGIES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    lines = []
    for pool_seed in pool_seeds:
        demo = _pool(args.scale, pool_seed, args.out)
        options = types.SimpleNamespace(budget=budget, workers=2, seed=0, merge="linear", max_weight=1.0)
        base_spec = demo_spec(demo, "recycling", "tpe", options)
        evaluators, scorer = MemoEvaluators(base_spec, "cpu"), HeldOutScorer(base_spec, "cpu")
        # Strategy by strategy, the shipped default first: a run cut short still has whole strategies.
        for name in names:
            for search_seed in search_seeds:
                strategy, changes = STRATEGIES[name]
                spec = base_spec.model_copy(update={"strategy": strategy, "seed": search_seed, **changes})
                line = one_run(name, spec, pool_seed, search_seed, evaluators, scorer, args.out, resamples)
                lines.append(line)
                print(json.dumps(line), flush=True)
                with (args.out / "runs.jsonl").open("a") as saved:  # for --from-lines
                    saved.write(json.dumps(line) + "\n")
    summaries = [summary(name, lines) for name in names]
    for line in summaries:
        print(json.dumps(line), flush=True)
    if args.write:
        write_markdown(args.write, lines, summaries, "python bench/science.py " + " ".join(argv or sys.argv[1:]))
    return 0


def write_markdown(path: Path, lines: list[dict], summaries: list[dict], command: str) -> None:
    def cell(value) -> str:
        if value is None:
            return "–"
        mark = " ✓" if value["lo"] > 0 else (" ✗" if value["hi"] < 0 else "")
        return f"{value['diff']:+.3f} [{value['lo']:+.3f}, {value['hi']:+.3f}]{mark}"

    pools = sorted({line["pool_seed"] for line in lines})
    searches = sorted({line["search_seed"] for line in lines})
    out = [
        "# Science: does the search's merge beat the paper's baselines on held-out data?", "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}.",
        f"Pool seeds {pools}, search seeds {searches}; {lines[0]['budget']} trials per search on the recycling pool "
        f"({lines[0]['checkpoints']} checkpoints). What is measured and why: the docstring of `bench/science.py`.",
        f"Dev seeds (used to build and check the method and this benchmark): pool {list(DEV_POOL_SEEDS)}, search "
        f"{list(DEV_SEARCH_SEEDS)}. Report seeds (never used for anything else): pools {list(REPORT_POOL_SEEDS)}, search "
        f"{list(REPORT_SEARCH_SEEDS)}. Runs per strategy below: strategies run one after another, the default first, "
        "so a run cut short has fewer runs of the last strategies.",
        *(f"Retired report seeds: pools {list(p)}, searches {list(q)} ({what})." for p, q, what in BURNED_REPORT_SEEDS),
        "Time (searches and verdicts, pool builds not counted): " + ", ".join(
            f"pool {pool} {sum(line['seconds'] for line in lines if line['pool_seed'] == pool) / 60:.0f} min" for pool in pools)
        + " (pools run one after another, or side by side as `--pool-seeds` processes).", "",
        "Each cell: held-out difference of normalized macro-averages (positive: the merge is better; 1.0 = the spread "
        "of the single checkpoints on a task), with its interval from a paired bootstrap over held-out groups, "
        "Holm-corrected over the run's comparisons. ✓ the interval lies above 0, ✗ below. Left-out task: raw "
        "nats/token on decimal against the greedy soup (positive: the merge is better).", "",
        "## Summary: runs whose interval lies above 0 / below 0, of all runs (mean difference)", "",
        "| strategy | vs best single | vs uniform soup | vs greedy soup | left-out task vs greedy | checkpoints with weight > 0.01 |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:
        cells = [f"{s[k]['above_0']} / {s[k]['below_0']} of {s[k]['runs']} ({s[k]['mean_diff']:+.3f})"
                 for k in ("vs_best_single", "vs_uniform", "vs_greedy", "left_out_task")]
        out.append(f"| {s['summary']} | " + " | ".join(cells) + f" | {s['weights_above_001_mean']:.1f} |")
    out += ["", "## Every run", "",
            "| strategy | pool | search | vs best single | vs uniform | vs greedy | left-out | weights > 0.01 | singles dominated (point / 95%) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for line in lines:
        d = line["dominated"]
        out.append(f"| {line['strategy']} | {line['pool_seed']} | {line['search_seed']} | {cell(line['vs_best_single'])} | "
                   f"{cell(line['vs_uniform'])} | {cell(line['vs_greedy'])} | {cell(line['left_out_task'])} | "
                   f"{line['weights_above_001']}/{line['checkpoints']} | {d['in_point_estimate']} / {d['with_confidence']} of {d['singles']} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")


def _pool(scale: str, seed: int, out: Path):
    """The demo's pool (cached where `recycle demo` keeps it), or a smaller scale's under `out`."""
    if scale == "demo":
        return build_demo("recycling", Settings().pool_cache_dir, seed, log=lambda *a: None)
    from recycle.demo.recycling_pool import build_recycling_pool

    return build_recycling_pool(out / f"pool-{scale}-{seed}", scale=scale, seed=seed, log=lambda *a: None)


if __name__ == "__main__":
    sys.exit(main())
