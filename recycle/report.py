"""What a finished search tells a person: the comparison table, the front, the plot.

The best merge is selected on the search split and judged on the held-out
report split, as the paper does; single checkpoints and soups are the baselines.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from rich.console import Console
from rich.table import Table

from contracts import Objective, TrialResult, TrialStatus
from proposer import ParetoArchive, macro_average

BASELINE_SOURCES = ("uniform", "greedy")


def is_single(result: TrialResult) -> bool:
    return result.proposal.source.startswith("single:")


def macro(result: TrialResult, objectives: list[Objective], split: str) -> float:
    return macro_average(getattr(result, split), objectives)


@dataclass(frozen=True)
class Comparison:
    """Held-out macro-averages (lower is better) of the baselines and the selected merge."""

    best_single: TrialResult
    uniform: TrialResult | None
    greedy: TrialResult | None
    best_merge: TrialResult  # best search-split macro-average among all non-single trials
    objectives: list[Objective]

    def report_macro(self, result: TrialResult | None) -> float | None:
        return None if result is None else macro(result, self.objectives, "report")

    @property
    def margin_over_best_single(self) -> float:
        """How much lower the merge's held-out macro-average is than the best single's."""
        return self.report_macro(self.best_single) - self.report_macro(self.best_merge)


def compare(results: list[TrialResult], objectives: list[Objective]) -> Comparison | None:
    ok = [r for r in results if r.status is TrialStatus.ok and r.report]
    singles = [r for r in ok if is_single(r)]
    merges = [r for r in ok if not is_single(r)]
    if not singles or not merges:
        return None

    def best(candidates, split):
        return min(candidates, key=lambda r: macro(r, objectives, split)) if candidates else None

    return Comparison(
        best_single=best(singles, "report"),
        uniform=best([r for r in ok if r.proposal.source == "uniform"], "report"),
        greedy=best([r for r in ok if r.proposal.source == "greedy"], "scores"),
        best_merge=best(merges, "scores"),
        objectives=objectives,
    )


def weights_text(result: TrialResult, names: list[str]) -> str:
    return " ".join(f"{name}={w:.2f}" for name, w in zip(names, result.proposal.weights) if abs(w) > 0.005)


def print_front(results, objectives, checkpoint_names, console: Console | None = None) -> None:
    console = console or Console()
    archive = ParetoArchive(objectives)
    for result in results:
        archive.add(result)
    shown = {r.trial_id: r for r in results if is_single(r) or r.proposal.source in BASELINE_SOURCES}
    shown.update({r.trial_id: r for r in archive.front})
    front_ids = {r.trial_id for r in archive.front}

    table = Table(title="Pareto front (search split) and baselines; scores on the held-out report split")
    for column in ["trial", "source", "front", "macro search", "macro report"]:
        table.add_column(column, justify="right" if column.startswith("macro") else "left")
    for objective in objectives:
        table.add_column(f"{objective.name} ({'↓' if objective.direction.sign > 0 else '↑'})", justify="right")
    table.add_column("weights")
    for result in sorted(shown.values(), key=lambda r: macro(r, objectives, "scores")):
        table.add_row(
            str(result.proposal.number),
            result.proposal.source,
            "★" if result.trial_id in front_ids else "",
            f"{macro(result, objectives, 'scores'):.4f}",
            f"{macro(result, objectives, 'report'):.4f}" if result.report else "-",
            *[f"{result.report.get(o.name, float('nan')):.4f}" for o in objectives],
            weights_text(result, checkpoint_names),
        )
    console.print(table)


def print_comparison(comparison: Comparison, checkpoint_names, console: Console | None = None) -> None:
    console = console or Console()
    rows = [
        ("best single checkpoint", comparison.best_single),
        ("uniform soup", comparison.uniform),
        ("greedy soup", comparison.greedy),
        ("optimized merge (selected on search split)", comparison.best_merge),
    ]
    table = Table(title="Held-out (report split) macro-average, lower is better")
    for column in ["", "trial", "macro report", "weights > 0.01"]:
        table.add_column(column)
    for label, result in rows:
        if result is not None:
            used = sum(1 for w in result.proposal.weights if w > 0.01)
            table.add_row(label, result.proposal.source, f"{comparison.report_macro(result):.4f}", f"{used}/{len(checkpoint_names)}")
    console.print(table)
    margin = comparison.margin_over_best_single
    verdict = "beats" if margin > 0 else "does NOT beat"
    console.print(f"The optimized merge {verdict} the best single checkpoint on the held-out macro-average by {margin:+.4f}.")


def plot_front(results, objectives, path: Path, split: str = "scores", title: str = "") -> Path:
    """Scatter of every trial per objective pair (loss-form axes), front and baselines marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if r.status is TrialStatus.ok and getattr(r, split)]
    archive = ParetoArchive(objectives)
    for result in ok:
        archive.add(result)
    front_ids = {r.trial_id for r in archive.front}
    pairs = list(combinations(range(len(objectives)), 2)) or [(0, 0)]
    figure, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4.5), squeeze=False)
    for axis, (i, j) in zip(axes[0], pairs):
        x_name, y_name = objectives[i].name, objectives[j].name

        def xy(rs):
            return [getattr(r, split)[x_name] for r in rs], [getattr(r, split)[y_name] for r in rs]

        axis.scatter(*xy(ok), s=12, c="0.7", label="trials")
        front = sorted((r for r in ok if r.trial_id in front_ids), key=lambda r: getattr(r, split)[x_name])
        axis.plot(*xy(front), "o-", c="tab:blue", ms=5, label="Pareto front")
        for result in ok:
            if is_single(result):
                axis.scatter(*xy([result]), marker="s", s=50, c="tab:red")
                (x,), (y,) = xy([result])
                axis.annotate(result.proposal.source.split(":", 1)[1], (x, y), fontsize=8)
        for source, marker, colour in [("uniform", "^", "tab:green"), ("greedy", "D", "tab:purple")]:
            members = [r for r in ok if r.proposal.source == source]
            if members:
                axis.scatter(*xy(members), marker=marker, s=50, c=colour, label=f"{source} soup")
        axis.scatter([], [], marker="s", c="tab:red", label="single checkpoints")
        axis.set_xlabel(f"{x_name} ({objectives[i].direction.value})")
        axis.set_ylabel(f"{y_name} ({objectives[j].direction.value})")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(title or f"recycle: trials and Pareto front ({'search' if split == 'scores' else 'report'} split)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
