"""Weights per layer group or per module class vs one weight per checkpoint, judged held out
(issue 20's target).

On the recycling pool (recycle.demo.recycling_pool: 16 generalist checkpoints and their
base, 4-layer GPT-2s; python, prose and a multiple-choice objective; decimal left out),
the shipped default search (`recycle demo`'s: TPE, the surrogate pre-screen, dominance
probes; recycle.commands.runs.demo_spec) runs three ways per search seed:
- global-64, global-128: one weight per checkpoint (17 weights), 64 and 128 trials;
- groups4-128: a weight vector per layer group (merge.weights per layer_groups, 4 groups
  of one layer each, embeddings with group 0, final norm and head with group 3: 68
  weights), 128 trials. The baselines, greedy soup and probes are whole-model merges (the
  same weights in every group), so the grouped search starts where the global one does;
  68 weights exceed proposer.surrogate.MAX_WEIGHTS (32), so its asks are TPE's own
  favourites, not pre-screened (the global search's are).
- with `--layout module_classes`, classes-128 instead: a weight vector per module class
  (merge.weights per module_classes: embeddings with the head, attention, mlp, norms: 68
  weights), 128 trials, the same way.
Each run's merge (its own proposal with the best normalized macro on the search split) is
judged as bench/science.py judges it (recycle.local.verdict: paired cluster bootstrap over
held-out groups, Holm over the run's comparisons) against the best single, the uniform and
the greedy soup; then, per search seed, the grouped merge against both global merges and
global-128 against global-64 on the held-out normalized macro, with the same paired
bootstrap, Holm-corrected over the seed's three comparisons (as the verdict corrects per run).

--merge-speed instead times the in-place merge a trial runs (MergeMethod.merge_into) on 4 bf16
checkpoints of SmolLM2-135M's shape (bench/merge.py's random pool, 30 layers), one weight per
checkpoint against 4 and 30 layer groups (a segment cut into runs of one group, one kernel
call per run), best of 5, interleaved, one intra-op thread, in one process.

Seeds: pool seed 0 with search seeds 200-202 are dev seeds (pool seed 0 is bench/science.py's
dev pool): the benchmark was built and first run on them; nothing was tuned. `--report` runs the
report seeds, measured once, after the dev runs and with nothing changed since: pool seed 3
(bench/science.py's report pool: other training runs, another held-out split) with search seeds
210-212, never used elsewhere. Prints one JSON line per run and per comparison; --write also
writes docs/results/layers.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.machine import commit_of, describe as machine  # noqa: E402
from bench.science import COMPARISONS, MemoEvaluators, _pool, interval, search_and_judge  # noqa: E402
from contracts import WeightLayout  # noqa: E402
from recycle.commands.runs import demo_spec  # noqa: E402
from recycle.local.heldout import HeldOutScorer  # noqa: E402
from recycle.local.significance import decide, macro_test  # noqa: E402
from recycle.local.verdict import BASELINES  # noqa: E402

DEV_SEEDS = (0, (200, 201, 202))  # (pool seed, search seeds): see the docstring
REPORT_SEEDS = (3, (210, 211, 212))


def configs(per: str, groups: int, small: int, large: int) -> dict[str, tuple[int, WeightLayout]]:
    """Run label -> (budget, layout): the global search at both budgets, the grouped one (`per`
    layer_groups, `groups` of them, or module_classes) at the larger."""
    if per == "module_classes":
        label, layout = f"classes-{large}", WeightLayout(per="module_classes")
    else:
        label, layout = f"groups{groups}-{large}", WeightLayout(per="layer_groups", groups=groups)
    return {f"global-{small}": (small, WeightLayout()), f"global-{large}": (large, WeightLayout()), label: (large, layout)}


def pairs(labels: list[str]) -> list[tuple[str, str]]:
    """(candidate, baseline) compared per search seed: the grouped run against each global one, and
    the larger global budget against the smaller."""
    small, large, grouped = labels
    return [(grouped, small), (grouped, large), (large, small)]


def one_run(label, spec, pool_seed, search_seed, evaluators, scorer, out_dir, resamples) -> tuple[dict, object, object]:
    """(JSON line, the run's merge Entry, its verdict)."""
    started = time.perf_counter()
    results, verdict = search_and_judge(label, spec, f"layers-{label}-p{pool_seed}-s{search_seed}", evaluators, scorer,
                                        out_dir, resamples)
    merge = verdict.merges[0]
    by_baseline = verdict.comparisons[merge.label]
    n, groups = len(spec.pool.names), spec.merge.weights.n_groups
    per_group = np.reshape(merge.result.proposal.weights, (groups, n))
    line = {
        "run": label, "pool_seed": pool_seed, "search_seed": search_seed, "budget": spec.budget, "groups": groups,
        "held_out_macro": merge.held_out_macro,
        "search_macro": verdict.normalization.macro(merge.result.scores),
        "merge_source": str(merge.result.proposal.source),
        # How far apart the merge's group weight vectors are (0: a whole-model merge).
        "group_spread": float(np.abs(per_group - per_group.mean(axis=0)).max()),
        **{key: interval(by_baseline[name]) for key, name in COMPARISONS.items()},
        "baselines_held_out_macro": {e.label: e.held_out_macro for e in verdict.entries if e.label in BASELINES},
        "failed_trials": sum(r.status.value != "ok" for r in results),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return line, merge, verdict


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", default="demo", help="pool scale: demo (the benchmark) or test (a smoke run: 2 groups, the model has 2 layers)")
    parser.add_argument("--quick", action="store_true", help="one search seed, 24 and 32 trials (a smoke run)")
    parser.add_argument("--report", action="store_true", help="the report seeds (pool 3, searches 210-212)")
    parser.add_argument("--seeds", help="only these search seeds, comma separated")
    parser.add_argument("--layout", choices=["layer_groups", "module_classes"], default="layer_groups",
                        help="what the grouped run has a weight vector per")
    parser.add_argument("--out", type=Path, default=Path(".cache/bench-layers"))
    parser.add_argument("--write", type=Path, help="also write the figures as Markdown (docs/results/layers.md)")
    parser.add_argument("--from-lines", type=Path, help="write the Markdown from the JSON lines of an earlier run")
    parser.add_argument("--merge-speed", action="store_true", help="time grouped vs global in-place merges instead")
    args = parser.parse_args(argv)
    command = "python bench/layers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.from_lines:
        lines = [json.loads(x) for x in args.from_lines.read_text().splitlines() if x.strip()]
        if args.write:
            write_markdown(args.write, lines, command)
        return 0
    if args.merge_speed:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "merge-speed.jsonl").unlink(missing_ok=True)  # the latest figures only
        for line in merge_speed(args.out, quick=args.scale == "test"):
            emit(line, [], args.out / "merge-speed.jsonl")
        return 0
    groups = 2 if args.scale == "test" else 4
    small, large, resamples = (24, 32, 2_000) if args.quick else (64, 128, 10_000)
    pool_seed, seeds = REPORT_SEEDS if args.report else DEV_SEEDS
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else seeds[: 1 if args.quick else None]
    args.out.mkdir(parents=True, exist_ok=True)
    demo = _pool(args.scale, pool_seed, args.out)
    options = types.SimpleNamespace(budget=small, workers=2, seed=0, merge="linear", max_weight=1.0)
    base_spec = demo_spec(demo, "recycling", "tpe", options)
    # One evaluator pool and held-out scorer per layout (a merge reads its layout's weights).
    tools: dict[WeightLayout, tuple] = {}
    lines = []
    saved = args.out / "runs.jsonl"
    runs = configs(args.layout, groups, small, large)
    commit = commit_of(Path(__file__).resolve().parents[1])  # what ran: later code may search differently
    # Seed by seed, its comparisons right after its runs: a run cut short has whole seeds.
    for seed in seeds:
        merges, scales = {}, {}
        for label, (budget, layout) in runs.items():
            spec = base_spec.model_copy(update={"seed": seed, "budget": budget,
                                                "merge": {**base_spec.merge.model_dump(), "weights": layout.model_dump()}})
            if layout not in tools:
                tools[layout] = (MemoEvaluators(spec, "cpu"), HeldOutScorer(spec, "cpu"))
            line, merge, verdict = one_run(label, spec, pool_seed, seed, *tools[layout], args.out, resamples)
            merges[label], scales[label] = (merge, tools[layout][1]), verdict.normalization
            # Every line names the grouped layout its seed's runs compare (the global runs too).
            emit({"run": label, "layout": args.layout, **line, "commit": commit}, lines, saved)
        compared = pairs(list(runs))
        tests = []
        for candidate, baseline in compared:
            (merge_c, scorer_c), (merge_b, scorer_b) = merges[candidate], merges[baseline]
            scale = scales[baseline]  # the singles set it: the same in every run on the pool
            tasks = {o.name: w for o, w in zip(scale.objectives, scale.task_weights())}
            tests.append(macro_test(f"{candidate} vs {baseline} (seed {seed})", scorer_b.items(merge_b.result, tasks),
                                    scorer_c.items(merge_c.result, tasks), tasks, resamples))
        for (candidate, baseline), decision in zip(compared, decide(tests)):  # Holm over the seed's comparisons
            emit({"comparison": f"{candidate} vs {baseline}", "layout": args.layout, "search_seed": seed, "pool_seed": pool_seed,
                  **interval(decision), "family_size": len(tests)}, lines, saved)
    if args.write:  # with the latest --merge-speed figures, when there are some
        speeds = args.out / "merge-speed.jsonl"
        latest = [json.loads(x) for x in speeds.read_text().splitlines()] if speeds.exists() else []
        write_markdown(args.write, lines + [line for line in latest if "merge_speed" in line], command)
    return 0


def merge_speed(cache: Path, quick: bool, repeats: int = 5) -> list[dict]:
    """Seconds per in-place merge (best of `repeats`) by weight layout, on bench/merge.py's pool."""
    import torch

    from bench.merge import FULL, QUICK, build_pool, open_pool, warm_page_cache
    from contracts import MergeSpec
    from merger import allocate_outputs, make_method

    shape = QUICK if quick else FULL
    dirs = build_pool(cache / "merge-pool", shape, "bf16", 4)
    warm_page_cache(dirs)
    torch.set_num_threads(1)
    pool = open_pool([str(d) for d in dirs])
    out = allocate_outputs(pool)
    layers = shape["num_hidden_layers"]
    layouts = {"per model": WeightLayout(), **{f"{k} layer groups": WeightLayout(per="layer_groups", groups=k)
                                               for k in sorted({min(4, layers), layers})}}
    rng = np.random.default_rng(0)
    methods = {name: make_method(pool, MergeSpec(weights=layout)) for name, layout in layouts.items()}
    weights = {name: rng.dirichlet(np.ones(4), size=layout.n_groups).ravel().tolist() for name, layout in layouts.items()}
    for name, method in methods.items():
        method.merge_into(weights[name], out)  # compiles the fused kernel, touches the outputs
    best = {name: float("inf") for name in methods}
    for _ in range(repeats):
        for name, method in methods.items():
            started = time.perf_counter()
            method.merge_into(weights[name], out)
            best[name] = min(best[name], time.perf_counter() - started)
    runs = {name: sum(len(r) for r in method._runs) for name, method in methods.items()}
    pool.close()
    model_bytes = sum(pool.shape(n).numel() * 2 for n in pool.tensor_names)
    return [{"merge_speed": name, "seconds": best[name], "ratio_to_per_model": best[name] / best["per model"],
             "segment_runs": runs[name], "checkpoints": 4, "dtype": "bf16", "layers": layers,
             "gb_per_s": 5 * model_bytes / best[name] / 1e9, "threads": 1, "repeats": repeats} for name in methods]


def emit(line: dict, lines: list, saved: Path) -> None:
    lines.append(line)
    print(json.dumps(line), flush=True)
    with saved.open("a") as out:  # for --from-lines
        out.write(json.dumps(line) + "\n")


# The grouped layouts a seed's three runs compare (lines from before --layout are layer groups).
LAYOUTS = {"layer_groups": "a weight vector per layer group", "module_classes": "a weight vector per module class"}


def write_markdown(path: Path, lines: list[dict], command: str) -> None:
    def cell(value) -> str:
        mark = " ✓" if value["lo"] > 0 else (" ✗" if value["hi"] < 0 else "")
        return f"{value['diff']:+.3f} [{value['lo']:+.3f}, {value['hi']:+.3f}]{mark}"

    def layout(line: dict) -> str:
        return line.get("layout", "layer_groups")

    speeds = [line for line in lines if "merge_speed" in line]
    all_runs = [line for line in lines if "run" in line]
    kinds = {DEV_SEEDS[0]: "dev", REPORT_SEEDS[0]: "report"}
    out = [
        "# Layers: a weight vector per layer group or per module class vs one weight per checkpoint, held out", "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()} "
        "(shared with other sessions: timings are indicative).",
        f"Dev seeds: pool {DEV_SEEDS[0]}, searches {list(DEV_SEEDS[1])} (the benchmark was built and first run on them; "
        f"nothing tuned). Report seeds, measured once: pool {REPORT_SEEDS[0]}, searches {list(REPORT_SEEDS[1])}. What is "
        "measured and why: the docstring of `bench/layers.py`. Each layout's seeds ran their own global searches, so a "
        "seed's global runs differ between sections when the code changed in between (sections name their commit where "
        "the runs recorded it; the layer-group report runs did not, they ran at c174120; 2715de2 then changed "
        "multiple-choice log-probabilities within 2e-7, enough to send a search another way).", "",
        "Held-out normalized macro-average (lower is better; 1.0 = the spread of the single checkpoints on a task) of "
        "each run's merge, and its difference to each baseline (positive: the merge is better) with the interval of "
        "a paired bootstrap over held-out groups, Holm-corrected over the run's comparisons. ✓ above 0, ✗ below.", "",
    ]
    for kind in dict.fromkeys(layout(line) for line in lines if "run" in line or "comparison" in line):
        runs = [r for r in all_runs if layout(r) == kind]
        comparisons = [c for c in lines if "comparison" in c and layout(c) == kind]
        labels = list(dict.fromkeys(r["run"] for r in runs))
        pools = sorted({r["pool_seed"] for r in runs}, key=lambda seed: kinds.get(seed) != "report")  # report first
        commits = sorted({r["commit"] for r in runs if "commit" in r})
        out += [f"## {LAYOUTS[kind].capitalize()}", ""]
        if commits:
            out += [f"Runs from commit {', '.join(commits)}.", ""]
        for pool in pools:
            whole = {c["search_seed"] for c in comparisons if c["pool_seed"] == pool}  # seeds whose three runs finished
            out += [f"### Pool seed {pool} ({kinds.get(pool, 'other')} seeds): mean over the search seeds whose three runs "
                    f"finished ({sorted(whole)})", "",
                    "| run | trials | held-out macro (mean) | vs best single (mean) | vs uniform (mean) | vs greedy (mean) |",
                    "|---|---|---|---|---|---|"]
            for label in labels:
                mine = [r for r in runs if r["run"] == label and r["pool_seed"] == pool and r["search_seed"] in whole]
                if not mine:
                    continue
                mean = lambda key: sum(r[key]["diff"] for r in mine) / len(mine)  # noqa: E731
                out.append(f"| {label} | {mine[0]['budget']} | {sum(r['held_out_macro'] for r in mine) / len(mine):.4f} | "
                           f"{mean('vs_best_single'):+.3f} | {mean('vs_uniform'):+.3f} | {mean('vs_greedy'):+.3f} |")
            out.append("")
        out += ["### Against the global merges, per search seed", "",
                "Difference of held-out normalized macros (positive: the first is better), paired bootstrap over held-out "
                "groups, Holm-corrected over the seed's comparisons (3 per seed); p is one-sided, for the first being "
                "better (the verdict's test), so a worse first has p = 1.", "",
                "| pool | seed | comparison | difference [interval] | p (Holm) |", "|---|---|---|---|---|"]
        for pool in pools:
            for c in (c for c in comparisons if c["pool_seed"] == pool):
                out.append(f"| {pool} | {c['search_seed']} | {c['comparison']} | {cell(c)} | {c['p_holm']:.3f} |")
        out.append("")
    out += ["## Every run", "",
            "| layout | run | pool | seed | held-out macro | search macro | merge | group spread | vs best single | vs uniform "
            "| vs greedy | s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in all_runs:
        out.append(f"| {layout(r)} | {r['run']} | {r['pool_seed']} | {r['search_seed']} | {r['held_out_macro']:.4f} | "
                   f"{r['search_macro']:.4f} | {r['merge_source']} | {r['group_spread']:.3f} | {cell(r['vs_best_single'])} | "
                   f"{cell(r['vs_uniform'])} | {cell(r['vs_greedy'])} | {r['seconds']:.0f} |")
    out += ["", "Group spread: the largest distance of a group's weight from the merge's mean over groups (0: the same "
            "weights in every group, a whole-model merge)."]
    if speeds:
        out += ["", "## The in-place merge per layout (`--merge-speed`)", "",
                f"{speeds[0]['checkpoints']} {speeds[0]['dtype']} checkpoints of SmolLM2-135M's shape ({speeds[0]['layers']} "
                f"layers), best of {speeds[0]['repeats']}, {speeds[0]['threads']} thread; GB/s counts the bytes read and written.", "",
                "| weights | seconds | vs per model | segment runs | GB/s |", "|---|---|---|---|---|"]
        for s in speeds:
            out.append(f"| {s['merge_speed']} | {s['seconds']:.4f} | {s['ratio_to_per_model']:.2f}x | {s['segment_runs']} | "
                       f"{s['gb_per_s']:.1f} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    sys.exit(main())
