"""bench/search.py's machinery on a few short searches: every peer runs through the driver with
the same baselines, and the summary has the keys issue 19 asks for (the figures themselves come
from `python bench/search.py`, never from a test)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import search  # noqa: E402
from search_objectives import Synthetic  # noqa: E402
from search_peers import PEERS  # noqa: E402

KEYS = {"objective", "strategy", "budget", "seeds", "hv_gain_vs_random", "best_macro_heldout", "trials_to_95pct",
        "ask_ms_p50", "ask_ms_p95"}


def test_peers_share_the_baselines_and_the_summary_has_every_key(monkeypatch):
    monkeypatch.setattr(search, "BUDGETS", (12, 16))
    objective = Synthetic(n_checkpoints=4)
    chosen = [p for p in PEERS if p.label in ("random", "default")]
    try:  # Optuna is the bench extra: without it only recycle's own peers run
        import optuna  # noqa: F401

        chosen += [p for p in PEERS if p.label in ("optuna-tpe", "paper-cmaes")]
    except ImportError:
        pass
    runs = []
    for seed in (100, 101):
        for peer in chosen:
            runs.append({"objective": objective.name, "peer": peer.label, "seed": seed, "budget": 16,
                         **search.run_search(objective, peer, 16, seed)})
    # The fixed baselines come first and are the same for every peer (the first 5 trials: 4 singles, uniform).
    firsts = {tuple(r["curve"][:5]) for r in runs if r["seed"] == 100}
    assert len(firsts) == 1
    lines = search.summarize(runs)
    assert {(line["strategy"], line["budget"]) for line in lines} == {(p.label, b) for p in chosen for b in (12, 16)}
    for line in lines:
        assert KEYS <= set(line)
        assert set(line["hv_gain_vs_random"]) == set(line["best_macro_heldout"]) == {"mean", "lo", "hi"}
        assert line["hv_gain_vs_random"]["lo"] <= line["hv_gain_vs_random"]["mean"] <= line["hv_gain_vs_random"]["hi"]
    assert all(line["hv_gain_vs_random"]["mean"] == 1.0 for line in lines if line["strategy"] == "random")


def test_design_figures_show_the_isometric_log_ratios_unbiased_and_the_report_checks_the_targets(tmp_path):
    from search_design import simplex_coordinates
    from search_report import write_docs

    rows = {(r["checkpoints"], r["coordinates"].split(",")[0]): r for r in simplex_coordinates(draws=4000)}
    for n in (9, 17):
        ilr, alr = rows[n, "isometric log-ratios"], rows[n, "additive log-ratios"]
        assert ilr["mean_weight_max"] - ilr["mean_weight_min"] < 0.1 / n  # within sampling error of 1/n
        assert alr["mean_weight_last"] < 0.8 / n  # the old coordinates starved the last checkpoint
        assert ilr["dense_share"] < alr["dense_share"]
    interval = {"mean": 1.25, "lo": 1.1, "hi": 1.4}
    line = {"objective": "synthetic", "strategy": "default", "budget": 32, "seeds": "100-101", "n_seeds": 2,
            "hv_gain_vs_random": interval, "best_macro_heldout": {"mean": 0.3, "lo": 0.2, "hi": 0.4},
            "trials_to_95pct": {"median": None, "reached": 0}, "ask_ms_p50": 1.0, "ask_ms_p95": 2.0}
    path = tmp_path / "search.md"
    seeds = {"tuning": range(0, 5), "report": range(100, 102), "pool_report": range(100, 101)}
    write_docs(path, [line, {**line, "strategy": "random", "hv_gain_vs_random": {"mean": 1.0, "lo": 1.0, "hi": 1.0}}],
               {"design": {"simplex": list(rows.values()), "tpe": None}}, "python bench/search.py", seeds)
    text = path.read_text()
    assert "1.25 [1.10, 1.40] meets the 1.2x target" in text and "## Design figures" in text



def test_the_report_names_peers_whose_held_out_best_got_worse_with_more_trials():
    from search_report import overfitting

    def line(strategy, budget, macro):
        return {"objective": "pool", "strategy": strategy, "budget": budget,
                "best_macro_heldout": {"mean": macro, "lo": macro, "hi": macro}}

    lines = [line("random", 32, -0.30), line("random", 64, -0.26),        # worse held out at 64
             line("default", 32, -0.30), line("default", 64, -0.3004),    # better
             line("tpe", 32, -0.30), line("tpe", 64, -0.2996)]            # worse by less than is printed
    assert overfitting("pool", lines) == [
        "- pool: the best held-out macro got worse from 32 to 64 trials (the search split's pick "
        "generalizes worse) for 1 of 3 peers: random -0.300 -> -0.260."]
    assert overfitting("pool", [l for l in lines if l["strategy"] != "random"]) == []
    assert overfitting("pool", [l for l in lines if l["budget"] == 32]) == []

def test_a_real_pool_objective_scores_merges_once_and_keeps_the_held_out_split_apart(recycling_pool, monkeypatch):
    """bench/search.py's pool objectives (tiny pool, recycling pool) on the recycling pool at test scale:
    a short search of real merges through the same driver, each distinct merge scored once."""
    from search_objectives import PoolObjective

    objective = PoolObjective(recycling_pool.pool, recycling_pool.tasks)
    budget = len(recycling_pool.pool.checkpoints) + 6  # the singles, the uniform and greedy soups, a few searched
    monkeypatch.setattr(search, "BUDGETS", (budget,))
    [peer] = [p for p in PEERS if p.label == "default"]
    run = search.run_search(objective, peer, budget, 100)
    assert run["figures"][str(budget)]["hv_gain"] >= 0.0 and len(run["curve"]) == budget
    scored = len(objective._scored)
    again = search.run_search(objective, peer, budget, 100)  # the same seed: the same merges, none scored again
    assert again["curve"] == run["curve"] and len(objective._scored) == scored
    some = next(iter(objective._scored.values())).proposal
    held_out = objective.held_out(some)
    assert set(held_out) == {t.name for t in recycling_pool.tasks}
    assert held_out != dict(objective.evaluate(some).scores)  # another split of the documents
