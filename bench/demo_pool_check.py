"""Does the demo pool show the paper's effect? Builds (or reuses) it and measures.

For every checkpoint, the uniform soup and random Dirichlet merges (plain fp32
weighted sums of state dicts), the token-weighted mean NLL of each domain's eval
documents, split into search/report halves by a hash of the text as the evaluator
does. The best merge is picked on the search split and judged on the report split
against every single checkpoint, with the base in the pool and without it.

    python bench/demo_pool_check.py [--scale demo] [--seed 0] [--cache .cache/demo-pool]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from evaluator.data import lm_windows
from recycle.demo.tiny_pool import BASE, build_demo_pool


def split_docs(path: str, spec) -> dict[str, list[str]]:
    splits = {"search": [], "report": []}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        text = json.loads(line)["text"]
        digest = hashlib.sha256(f"{spec.split_seed}\0{text}".encode()).digest()
        held_out = int.from_bytes(digest[:8], "little") / 2**64 < spec.report_fraction
        splits["report" if held_out else "search"].append(text)
    return splits


@torch.no_grad()
def nll(model, data, batch_size: int) -> float:
    ids, mask = data
    total, count = 0.0, 0
    for i in range(0, len(ids), batch_size):
        x, m = ids[i : i + batch_size], mask[i : i + batch_size]
        logits = model(input_ids=x, attention_mask=m).logits[:, :-1].float()
        losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
        keep = m[:, 1:].bool()
        total += losses[keep].sum().item()
        count += keep.sum().item()
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--merges", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(2)
    hf_logging.disable_progress_bar()
    cache = args.cache or Path(f".cache/demo-pool-{args.scale}-{args.seed}")

    started = time.perf_counter()
    demo = build_demo_pool(cache, scale=args.scale, seed=args.seed)
    print(f"build (or cache hit): {time.perf_counter() - started:.1f}s")

    names = demo.pool.names
    paths = dict(zip(names, (c.path for c in demo.pool.checkpoints)))
    tokenizer = AutoTokenizer.from_pretrained(paths[BASE])
    model = AutoModelForCausalLM.from_pretrained(paths[BASE], dtype=torch.float32).eval()
    states = {
        n: {k: v.float() for k, v in AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32).state_dict().items()}
        for n, p in paths.items()
    }
    tasks = [t.name for t in demo.tasks]
    # "full": every window of the split (the acceptance numbers); "trial": the first
    # max_items windows, exactly what one search trial costs.
    data = {"full": {}, "trial": {}}
    for task in demo.tasks:
        for split, texts in split_docs(task.path, task).items():
            data["full"][task.name, split] = lm_windows(texts, tokenizer, task.seq_len, max_items=10**9)
            data["trial"][task.name, split] = lm_windows(texts, tokenizer, task.seq_len, task.max_items)
    for key, (ids, _) in data["full"].items():
        print(f"  {key}: {len(ids)} windows (trial uses {len(data['trial'][key][0])})")

    def evaluate(weights: dict[str, float], which: str = "full") -> dict[tuple[str, str], float]:
        total = sum(weights.values())
        merged = {k: sum(w / total * states[n][k] for n, w in weights.items() if w) for k in states[BASE]}
        model.load_state_dict(merged)
        return {key: nll(model, d, demo.tasks[0].batch_size) for key, d in data[which].items()}

    def macro(scores, split):
        return sum(scores[t, split] for t in tasks) / len(tasks)

    seconds = []
    for _ in range(5):
        started = time.perf_counter()
        evaluate({BASE: 1.0}, "trial")
        seconds.append(time.perf_counter() - started)
    print(f"\neval one checkpoint, all tasks, both splits, trial windows: min {min(seconds):.2f}s, "
          f"median {sorted(seconds)[2]:.2f}s (merge + load + forward)")

    singles = {n: evaluate({n: 1.0}) for n in names}
    header = "checkpoint".ljust(12) + "".join(t.rjust(9) for t in tasks) + "   macro(report)  macro(search)"
    print("\nNLL on the report split (rows: checkpoint, columns: domain)\n" + header)
    for n, s in singles.items():
        cells = "".join(f"{s[t, 'report']:9.3f}" for t in tasks)
        print(n.ljust(12) + cells + f"{macro(s, 'report'):14.3f}{macro(s, 'search'):15.3f}")

    rng = np.random.default_rng(args.seed)
    for pool in (names, [n for n in names if n != BASE]):
        merges = {"uniform": {n: 1.0 for n in pool}}
        for i in range(args.merges):
            merges[f"dirichlet{i}"] = dict(zip(pool, rng.dirichlet(np.ones(len(pool))).tolist()))
        scored = {label: (w, evaluate(w)) for label, w in merges.items()}
        best_label = min(scored, key=lambda label: macro(scored[label][1], "search"))
        best_w, best = scored[best_label]
        best_single = min(pool, key=lambda n: macro(singles[n], "report"))
        single_macro = macro(singles[best_single], "report")
        print(f"\npool {pool}")
        for label in dict.fromkeys(("uniform", best_label)):
            w, s = scored[label]
            weights = " ".join(f"{w[n] / sum(w.values()):.2f}" for n in pool)
            cells = "".join(f"{s[t, 'report']:7.3f}" for t in tasks)
            print(f"  {label:12s} weights {weights}  report {cells}  macro {macro(s, 'report'):.3f}")
        print(f"  best merge (chosen on search) beats the best single ({best_single}) on report macro "
              f"by {single_macro - macro(best, 'report'):+.4f} nats")
        winners = sum(macro(s, "report") < single_macro for _, s in scored.values())
        print(f"  merges whose report macro beats every single: {winners}/{len(scored)}")
        trial = evaluate(best_w, "trial")
        trial_singles = min(macro(evaluate({n: 1.0}, "trial"), "report") for n in pool)
        print(f"  on trial windows only: best merge {macro(trial, 'report'):.3f} vs best single {trial_singles:.3f}")


if __name__ == "__main__":
    main()
