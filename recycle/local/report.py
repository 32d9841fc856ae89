"""What a finished search tells a person: the comparison table, the front, the plot.

The best merge is selected on the search split and judged on the held-out
report split, as the paper does; single checkpoints and soups are the baselines.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

from rich.console import Console
from rich.table import Table

from api.plotstyle import PLOT_STYLE, trial_kind
from contracts import SearchSpec, TrialResult, TrialStatus
from proposer import Normalization, ParetoArchive, normalization_of

def is_single(result: TrialResult) -> bool:
    return result.proposal.source.kind == "single"


def macro(result: TrialResult, normalization: Normalization, split: str) -> float:
    """Normalized macro-average on that split (proposer.normalize; lower is better)."""
    return normalization.macro(getattr(result, split))


def weights_text(result: TrialResult, spec: SearchSpec) -> str:
    """Each checkpoint's weight; per layer group or module class, its mean over them (the column title says so)."""
    weights = spec.merge.weights.mean_by_checkpoint(spec.pool.names, result.proposal.weights)
    return " ".join(f"{name}={w:.2f}" for name, w in weights.items() if abs(w) > 0.005)


def weights_title(spec: SearchSpec) -> str:
    layout = spec.merge.weights
    return f"weights (mean of {layout.n_groups} {layout.groups_word})" if layout.n_groups > 1 else "weights"


def print_front(results: list[TrialResult], spec: SearchSpec, console: Console | None = None) -> None:
    """The front and the baselines, raw scores per task, normalized macro-averages."""
    console = console or Console()
    objectives = spec.objectives
    normalization = normalization_of(spec, results)
    if normalization is None:
        console.print("no front yet: the single checkpoints, which set the scale, have not all been scored")
        return
    archive = ParetoArchive(objectives)
    for result in results:
        archive.add(result)
    shown = {r.trial_id: r for r in results
             if r.status is TrialStatus.ok and r.proposal.source.kind in ("single", "uniform", "greedy")}
    shown.update({r.trial_id: r for r in archive.front})
    front_ids = {r.trial_id for r in archive.front}

    # Per-task columns: held-out scores where every trial shown has them (report_every_trial),
    # else the search split's (the verdict scores the held-out split of the trials it judges).
    split = "report" if all(r.report for r in shown.values()) else "scores"
    where = "the held-out report split" if split == "report" else "the search split (held-out: see the verdict)"
    table = Table(title=f"Pareto front (search split) and baselines; task scores on {where}")
    for column in ["trial", "source", "front", "norm. macro search", "norm. macro report"]:
        table.add_column(column, justify="right" if "macro" in column else "left")
    for objective in objectives:
        table.add_column(f"{objective.name} ({'↓' if objective.direction.sign > 0 else '↑'})", justify="right")
    table.add_column(weights_title(spec))
    for result in sorted(shown.values(), key=lambda r: macro(r, normalization, "scores")):
        table.add_row(
            str(result.proposal.number),
            str(result.proposal.source),
            "★" if result.trial_id in front_ids else "",
            f"{macro(result, normalization, 'scores'):.4f}",
            f"{macro(result, normalization, 'report'):.4f}" if result.report else "-",
            *[f"{getattr(result, split).get(o.name, float('nan')):.4f}" for o in objectives],
            weights_text(result, spec),
        )
    console.print(table)


def print_verdict(verdict, spec: SearchSpec, console: Console | None = None) -> None:
    """The held-out table (normalized macro, raw per task), the Holm-corrected comparisons and the
    dominance check with both counts."""
    console = console or Console()
    names, objectives = spec.pool.names, spec.objectives
    left_out = [t.name for t in spec.left_out_tasks]
    table = Table(title="Held-out (report split): baselines and the merges selected on the search split")
    columns = ["", "trial", "norm. macro ↓", *[f"{o.name} {'↓' if o.direction.sign > 0 else '↑'}" for o in objectives],
               *[f"{name} (left out)" for name in left_out], "weights > 0.01", weights_title(spec)]
    for column in columns:
        table.add_column(column, justify="left" if column in ("", "trial", weights_title(spec)) else "right")
    for entry in verdict.entries:
        table.add_row(entry.label, f"{entry.result.proposal.number} {entry.result.proposal.source}",
                      f"{entry.held_out_macro:.4f}", *[f"{entry.held_out[name]:.4f}" for name in [o.name for o in objectives] + left_out],
                      f"{entry.weights_used}/{len(names)}", weights_text(entry.result, spec))
    console.print(table)
    groups = ", ".join(f"{task} {counts['search']}/{counts['report']}" for task, counts in verdict.groups.items())
    console.print(f"groups (independent sources) search/held-out per task: {groups}")
    signal = ", ".join(f"{task} {value:.1f}" for task, value in verdict.signal.items())
    console.print(f"the singles' held-out spread, in standard errors: {signal} (checkpoints of equal merit spread by"
                  f" {verdict.noise_range:.1f} by chance)")
    for task, value in verdict.signal.items():
        if value < verdict.noise_range:
            console.print(f"[yellow]task {task}: the singles differ no more than noise would make them; its scale, and"
                          " every verdict on it, is mostly noise: give it more items (questions, windows)[/]")
    console.print(f"intervals: paired bootstrap over held-out groups, Holm-corrected over {verdict.family_size} comparisons;"
                  " normalized macro: 0 = best single, 1 = worst single per task (search split); positive = the merge is better")
    for merge, by_baseline in verdict.comparisons.items():
        for baseline, decision in by_baseline.items():
            console.print(f"{merge} {_verdict_word(decision)} the {baseline}: {_interval(decision)}")
        for task, decision in verdict.left_out.get(merge, {}).items():
            console.print(f"  left-out task {task} (never searched on), vs the greedy soup: {_interval(decision, raw=True)}")
    point, confident, singles = verdict.dominated_counts()
    console.print(f"single checkpoints dominated on every held-out task: {point} of {singles} in point estimate, "
                  f"{confident} of {singles} with 95% confidence (Holm)")
    for check in verdict.dominance:
        if check.decision is None:
            console.print(f"  {check.single}: no front member dominates it on the search split")
        else:
            word = "dominated" if check.with_confidence else "not shown dominated"
            console.print(f"  {check.single}: {word} by trial {check.rival.proposal.number} ({check.rival.proposal.source});"
                          f" worst-task margin {_interval(check.decision)}")


def _verdict_word(decision) -> str:
    if decision.significant:
        return "[green]beats[/]"
    if decision.high < 0:
        return "[red]is worse than[/]"
    return "[yellow]does not significantly beat[/]"


def _interval(decision, raw: bool = False) -> str:
    unit = " (raw units)" if raw else ""
    diff, low, high = (x + 0.0 for x in (decision.test.diff, decision.low, decision.high))  # no "-0.0000"
    return (f"{diff:+.4f}{unit} [{low:+.4f}, {high:+.4f}] "
            f"({decision.confidence:.1%} interval, p_holm {decision.p_holm:.3f})")


MPL_MARKERS = {"circle": "o", "square": "s", "triangle": "^", "diamond": "D"}


def front_figure(results, objectives, split: str = "scores", title: str = ""):
    """The figure `plot_front` saves: one panel per objective pair (trial number against the
    score for one objective). Drawn as the status page draws it (api/plotstyle.py): every
    trial once, as a single, a soup, a front member or a plain trial; baselines on the
    front ringed in the front's colour; the front joined by a line only where it is the
    front of the panel (two objectives, search split)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    ok = [r for r in results if r.status is TrialStatus.ok and getattr(r, split)]
    archive = ParetoArchive(objectives)
    for result in ok:
        archive.add(result)
    front_ids = {r.trial_id for r in archive.front}
    kinds = {r.trial_id: trial_kind(r.proposal.source, r.trial_id in front_ids) for r in ok}
    line = len(objectives) == 2 and split == "scores"
    pairs = list(combinations(range(len(objectives)), 2)) or [(None, 0)]
    columns = min(3, len(pairs))  # 4 objectives make 6 pairs: a 2 x 3 grid, not one long row
    rows = -(-len(pairs) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4.5 * rows), squeeze=False)
    for axis in axes.flat[len(pairs):]:
        axis.set_visible(False)
    for axis, (i, j) in zip(axes.flat, pairs):
        y_name = objectives[j].name

        def x_of(r):
            return r.proposal.number if i is None else getattr(r, split)[objectives[i].name]

        def xy(rs):
            return [x_of(r) for r in rs], [getattr(r, split)[y_name] for r in rs]

        if line:
            front = sorted((r for r in ok if r.trial_id in front_ids), key=x_of)
            axis.plot(*xy(front), "-", c=PLOT_STYLE["front"]["color"], lw=1.5, zorder=1)
        for order, kind in enumerate(["trial", "front", "greedy", "uniform", "single"], start=2):
            style, members = PLOT_STYLE[kind], [r for r in ok if kinds[r.trial_id] == kind]
            if not members:
                continue
            ring = [PLOT_STYLE["front"]["color"] if r.trial_id in front_ids and kind != "front" else "white" for r in members]
            axis.scatter(*xy(members), marker=MPL_MARKERS[style["marker"]], s=style["size"], c=style["color"],
                         edgecolors=ring, linewidths=[1.5 if c != "white" else 0.4 for c in ring], zorder=order)
            if kind == "single":
                for result in members:
                    (x,), (y,) = xy([result])
                    axis.annotate(result.proposal.source.checkpoint, (x, y), fontsize=8,
                                  xytext=(4, 3), textcoords="offset points")
        axis.set_xlabel("trial number" if i is None else f"{objectives[i].name} ({objectives[i].direction.value})")
        axis.set_ylabel(f"{y_name} ({objectives[j].direction.value})")
        axis.grid(alpha=0.3)
    present = set(kinds.values())
    handles = []
    for kind, style in PLOT_STYLE.items():
        if kind in ("single", "front", "trial") or kind in present:
            handles.append(Line2D([], [], ls="-" if kind == "front" and line else "none", c=style["color"],
                                  marker=MPL_MARKERS[style["marker"]], ms=style["size"] ** 0.5 * 0.9, label=style["label"]))
    axes[0][0].legend(handles=handles, fontsize=8)
    figure.suptitle(title or f"recycle: trials and Pareto front ({'search' if split == 'scores' else 'report'} split)")
    figure.tight_layout()
    return figure


def plot_front(results, objectives, path: Path, split: str = "scores", title: str = "") -> Path:
    """Scatter of every trial per objective pair, front and baselines marked, as a PNG."""
    import matplotlib.pyplot as plt

    figure = front_figure(results, objectives, split, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
