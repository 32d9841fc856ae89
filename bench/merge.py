"""Merge bandwidth, working set and export cost on a SmolLM2-135M-shaped pool.

    python bench/merge.py [--dtype bf16|fp32|both] [--checkpoints 4] [--quick]

Prints one JSON line per figure, no assertions. Builds the pool once in --cache
(random tensors written straight to safetensors, no model instantiated), warms the
page cache, then runs each configuration in its own child process (a clean heap,
its own torch thread count and allocator settings, its own peak RSS):

- memcpy: torch copy of one model's bytes into a preallocated tensor (best of R);
- merge: in-memory linear merge into preallocated outputs, GB/s counted as bytes
  read (N checkpoints) + written (one model), and its ratio to memcpy; for 1 vs
  the default number of intra-op threads, with and without THP_MEM_ALLOC_ENABLE;
  through the compiled one-pass kernel (merger/fused.py: "kernel": "fused", its compile
  time apart) and, for bf16, eager torch too ("kernel": "eager"); outputs are laid out
  like the pool's segments (merger/segments.py), as the evaluator's resident model is;
- working set: private memory (VmRSS - RssFile: the mapped pool is page cache,
  shared by every worker) the merge adds, for 2 and N checkpoints;
- export: wall time and peak memory of export_merge.

    python bench/merge.py --race [--race-pools smollm2,1b] [--race-repeats 3]

The race: `recycle merge --config` against `mergekit-yaml` (0.1.5, its own venv:
tests/merger/mergekit_reference.py) on the same config, 4 bf16 checkpoints of random
Llamas of SmolLM2-135M's shape and of ~1.1B parameters (TinyLlama's shape), each
command a fresh process as a user runs it (start-up included), alternating, page cache
warm. One JSON line per run, one per pool with the medians, their ratio and whether
the two outputs are bit-identical. docs/results/merge.md gives the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FULL = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
            num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True)  # SmolLM2-135M
ONE_B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
             num_key_value_heads=4, vocab_size=32000, tie_word_embeddings=False)  # TinyLlama-1.1B
QUICK = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=1000, tie_word_embeddings=True)
DTYPES = {"bf16": "bfloat16", "fp32": "float32"}


RECORDS: list[dict] = []


def emit(figure: str, value, unit: str, **context) -> None:
    record = {"bench": "merge", "figure": figure, "value": value, "unit": unit, **context}
    RECORDS.append(record)
    print(json.dumps(record), flush=True)


# -- building the pool -------------------------------------------------------------


def llama_shapes(c: dict) -> dict[str, tuple[int, ...]]:
    h, i = c["hidden_size"], c["intermediate_size"]
    kv = h // c["num_attention_heads"] * c["num_key_value_heads"]
    shapes = {"model.embed_tokens.weight": (c["vocab_size"], h), "model.norm.weight": (h,)}
    for layer in range(c["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        shapes.update({
            p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
            p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h),
            p + "mlp.down_proj.weight": (h, i),
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
        })
    if not c["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (c["vocab_size"], h)
    return shapes


def build_pool(cache: Path, shape_config: dict, dtype_name: str, n: int) -> list[Path]:
    import torch
    import transformers

    from merger.safetensors_mmap import write_file

    dtype = getattr(torch, DTYPES[dtype_name])
    tag = {id(QUICK): "quick", id(FULL): "smollm2-135m", id(ONE_B): "llama-1.1b"}[id(shape_config)]
    dirs = []
    for k in range(n):
        d = cache / f"{tag}-{dtype_name}" / f"ckpt{k}"
        dirs.append(d)
        if (d / "model.safetensors").exists():
            continue
        d.mkdir(parents=True, exist_ok=True)
        # architectures: mergekit picks its tensor list by it.
        config = transformers.LlamaConfig(**shape_config, dtype=DTYPES[dtype_name], architectures=["LlamaForCausalLM"])
        (d / "config.json").write_text(config.to_json_string())
        shapes = llama_shapes(shape_config)
        g = torch.Generator().manual_seed(k)

        def fill(name, dt, shape):
            return (torch.randn(shape, generator=g) * 0.02).to(dt)

        tmp = d / "model.safetensors.tmp"
        with open(tmp, "wb") as f:
            write_file(f, [(name, dtype, s) for name, s in shapes.items()], fill, {"format": "pt"})
        tmp.rename(d / "model.safetensors")
    return dirs


def warm_page_cache(dirs: list[Path]) -> None:
    buf = bytearray(16 << 20)
    for d in dirs:
        with open(d / "model.safetensors", "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


# -- measurements, each in a child process -----------------------------------------


def proc_status() -> dict[str, int]:
    """Memory fields of /proc/self/status, in bytes."""
    out = {}
    for line in open("/proc/self/status"):
        key, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            out[key] = int(rest.split()[0]) * 1024
    return out


def private_bytes() -> int:
    s = proc_status()
    return s["VmRSS"] - s["RssFile"]


def open_pool(dirs: list[str]):
    from contracts.models import CheckpointRef, PoolSpec
    from merger import CheckpointPool

    spec = PoolSpec(name="bench", checkpoints=tuple(CheckpointRef(name=f"c{i}", path=p) for i, p in enumerate(dirs)))
    return CheckpointPool.open(spec)


def child_merge(args) -> None:
    import torch

    from contracts.models import MergeSpec
    from merger import allocate_outputs, fused, make_method

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.eager:
        fused.combine = lambda *args: False
    device = torch.device(args.device)
    ctx = dict(dtype=args.dtype_name, checkpoints=len(args.pool), threads=torch.get_num_threads(),
               thp=os.environ.get("THP_MEM_ALLOC_ENABLE") == "1", device=device.type,
               omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "default"))
    if device.type == "cuda":
        ctx["pool_on"] = "cpu" if args.staged else "cuda"
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    pool = open_pool(args.pool)
    if not args.staged:
        pool = pool.to_device(device)
    n, nbytes = len(pool), pool.nbytes
    weights = [1.0 / n] * n  # all non-zero: every checkpoint is read
    method = make_method(pool, MergeSpec())
    if not args.eager and device.type == "cpu":
        # Compile the fused kernel on throwaway tensors first: its cost (time, and the memory of
        # torch's compiler, per process, whatever the pool) is reported apart from the merge's.
        dtype = pool.float_dtype
        size = 4096 if dtype != torch.float32 else fused.FP32_MIN_ELEMENTS  # fp32: big merges only
        warm_out, warm_in = torch.empty(size, dtype=dtype), torch.ones(size, dtype=dtype)
        before, t0 = private_bytes(), time.perf_counter()
        if fused.combine(warm_out, [warm_in] * n, weights):
            emit("fused_compile_s", round(time.perf_counter() - t0, 2), "s", **ctx)
            emit("fused_compiler_private_bytes", private_bytes() - before, "B", **ctx)
        del warm_out, warm_in

    before = private_bytes()
    out = allocate_outputs(pool, device=device)
    t0 = time.perf_counter()
    method.merge_into(weights, out)  # first merge also faults the mapping into this process
    sync()
    first = time.perf_counter() - t0
    method.merge_into(weights, out)
    sync()
    ctx["kernel"] = "fused" if fused._kernels and fused._unavailable is None else "eager"
    if device.type == "cpu":
        working_set = private_bytes() - before
        emit("merge_working_set_bytes", working_set, "B", **ctx, model_bytes=nbytes,
             beyond_outputs_bytes=working_set - nbytes)
    if args.working_set_only:
        return
    emit("merge_first_s", round(first, 4), "s", **ctx)

    src = torch.ones(nbytes, dtype=torch.uint8, device=device)
    dst = torch.zeros(nbytes, dtype=torch.uint8, device=device)
    merge_times, copy_times = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same neighbours
        sync()
        t0 = time.perf_counter()
        dst.copy_(src)
        sync()
        copy_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        method.merge_into(weights, out)
        sync()
        merge_times.append(time.perf_counter() - t0)
    memcpy = 2 * nbytes / min(copy_times) / 1e9
    merge = (n + 1) * nbytes / min(merge_times) / 1e9
    median = (n + 1) * nbytes / sorted(merge_times)[len(merge_times) // 2] / 1e9
    emit("memcpy_gbps", round(memcpy, 2), "GB/s", **ctx, bytes=2 * nbytes)
    emit("merge_gbps", round(merge, 2), "GB/s", **ctx, bytes=(n + 1) * nbytes, median_gbps=round(median, 2),
         merge_s=round(min(merge_times), 4))
    emit("merge_to_memcpy_ratio", round(merge / memcpy, 3), "x", **ctx)


def child_export(args) -> None:
    import shutil

    import torch

    from contracts.models import MergeSpec
    from merger import export_merge

    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = dict(dtype=args.dtype_name, checkpoints=len(args.pool), threads=torch.get_num_threads(),
               thp=os.environ.get("THP_MEM_ALLOC_ENABLE") == "1")
    pool = open_pool(args.pool)
    target = Path(args.export_dir)
    shutil.rmtree(target, ignore_errors=True)

    # Sample private memory while exporting: VmHWM also counts the mapped pool's pages.
    peak, done = [private_bytes()], threading.Event()
    before = peak[0]

    def sample():
        while not done.wait(0.005):
            peak.append(private_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    export_merge(pool, MergeSpec(), [1.0] * len(pool), target)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    status = proc_status()
    written = sum(f.stat().st_size for f in target.glob("*.safetensors"))
    shutil.rmtree(target, ignore_errors=True)
    emit("export_s", round(wall, 3), "s", **ctx, bytes_written=written)
    emit("export_peak_private_bytes", max(peak) - before, "B", **ctx, model_bytes=pool.nbytes)
    emit("export_vmhwm_bytes", status["VmHWM"], "B", **ctx, pool_bytes=len(pool) * pool.nbytes,
         note="includes the mapped pool's page-cache pages")


def run_child(kind: str, dirs: list[Path], dtype_name: str, threads: int, thp: bool, repeats: int,
              extra: list[str] = (), device: str = "cpu") -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("THP_MEM_ALLOC_ENABLE", None)
    if thp:
        env["THP_MEM_ALLOC_ENABLE"] = "1"
    cmd = [sys.executable, __file__, "--_child", kind, "--_dtype-name", dtype_name, "--_threads", str(threads),
           "--repeats", str(repeats), "--device", device, *extra, "--_pool", *map(str, dirs)]
    subprocess.run(cmd, env=env, check=True)


# -- the race against mergekit ------------------------------------------------------


def race(cache: Path, pools: list[str], repeats: int) -> list[dict]:
    import statistics

    sys.path.insert(0, str(ROOT / "tests" / "merger"))
    from mergekit_reference import VENV, ensure_mergekit

    ensure_mergekit()
    shapes = {"smollm2": FULL, "1b": ONE_B, "quick": QUICK}
    recycle_bin = Path(sys.executable).parent / "recycle"
    for pool_name in pools:
        dirs = build_pool(cache, shapes[pool_name], "bf16", 4)
        config = cache / f"race-{pool_name}.yaml"
        weights = [0.4, 0.3, 0.2, 0.1]
        config.write_text("merge_method: linear\nmodels:\n" + "".join(
            f"  - model: {d}\n    parameters: {{weight: {w}}}\n" for d, w in zip(dirs, weights)))
        # recycle-weights: the same merge as `recycle merge CHECKPOINTS --weights` (issue 22's race).
        commands = {"recycle": [str(recycle_bin), "merge", "--config", str(config), "--out"],
                    "mergekit": [str(VENV / "bin" / "mergekit-yaml"), str(config)],
                    "recycle-weights": [str(recycle_bin), "merge", *map(str, dirs), "--weights", *map(str, weights), "--out"]}
        times: dict[str, list[float]] = {tool: [] for tool in commands}
        ctx = dict(pool=pool_name, checkpoints=4, dtype="bf16", method="linear",
                   checkpoint_bytes=sum(f.stat().st_size for f in dirs[0].glob("*.safetensors")), cores=os.cpu_count())
        for k in range(repeats):
            order = ["recycle", "mergekit", "recycle-weights"] if k % 2 == 0 else ["recycle-weights", "mergekit", "recycle"]
            for tool in order:
                out = cache / f"race-out-{tool}"
                subprocess.run(["rm", "-rf", str(out)], check=True)
                warm_page_cache(dirs)
                t0 = time.perf_counter()
                subprocess.run([*commands[tool], str(out)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times[tool].append(time.perf_counter() - t0)
                emit("race_run_s", round(times[tool][-1], 2), "s", tool=tool, run=k, load_average=os.getloadavg()[0], **ctx)
        same = outputs_identical(cache / "race-out-recycle", cache / "race-out-mergekit")
        medians = {tool: statistics.median(t) for tool, t in times.items()}
        emit("race_speedup", round(medians["mergekit"] / medians["recycle"], 2), "x", **ctx,
             recycle_median_s=round(medians["recycle"], 2), mergekit_median_s=round(medians["mergekit"], 2),
             repeats=repeats, bit_identical=same)
        emit("race_speedup_weights", round(medians["mergekit"] / medians["recycle-weights"], 2), "x", **ctx,
             recycle_weights_median_s=round(medians["recycle-weights"], 2), mergekit_median_s=round(medians["mergekit"], 2),
             repeats=repeats)
        for tool in times:
            subprocess.run(["rm", "-rf", str(cache / f"race-out-{tool}")], check=True)
    return RECORDS


def render_race(records: list[dict], command: str) -> str:
    """docs/results/merge.md from the race's JSON lines."""
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    loads = [r["load_average"] for r in records if "load_average" in r]
    lines = [
        "# `recycle merge --config` against `mergekit-yaml`",
        "",
        f"Regenerate: `{command}` (builds the pools once in .cache/bench-merge;",
        "mergekit 0.1.5 runs from its own venv, .cache/mergekit-venv, made on first use).",
        f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, load average "
        + (f"{min(loads):.1f}-{max(loads):.1f} during the runs" if loads else "not recorded")
        + f"; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Each command is a fresh process, as a user runs it (start-up included), the three alternating, the",
        "page cache warm; the same linear config (4 bf16 checkpoints, weights 0.4/0.3/0.2/0.1, normalize),",
        "random-weight Llamas of the named shape. `bit-identical`: every tensor mergekit wrote is in",
        "recycle's output with the same bytes.",
        "",
        "| pool | checkpoint size | recycle median s | mergekit median s | speed-up | runs each | bit-identical | recycle runs s | mergekit runs s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for summary in (r for r in records if r["figure"] == "race_speedup"):
        runs = {tool: [r["value"] for r in records if r["figure"] == "race_run_s" and r["pool"] == summary["pool"] and r["tool"] == tool]
                for tool in ("recycle", "mergekit", "recycle-weights")}
        lines.append(
            f"| {summary['pool']} | {summary['checkpoint_bytes'] / 1e9:.2f} GB | {summary['recycle_median_s']} | "
            f"{summary['mergekit_median_s']} | {summary['value']}x | {summary['repeats']} | {summary['bit_identical']} | "
            f"{', '.join(map(str, runs['recycle']))} | {', '.join(map(str, runs['mergekit']))} |")
    weights = [r for r in records if r["figure"] == "race_speedup_weights"]
    if weights:
        lines += ["", "The same merge through `recycle merge CHECKPOINTS --weights 0.4 0.3 0.2 0.1 --out DIR` (an export:",
                  "weights normalized first, then summed, so within one bf16 step of the config's output, not compared):", "",
                  "| pool | recycle merge --weights median s | mergekit median s | speed-up |", "|---|---|---|---|"]
        lines += [f"| {r['pool']} | {r['recycle_weights_median_s']} | {r['mergekit_median_s']} | {r['value']}x |" for r in weights]
    lines += [
        "",
        "Targets (issue 20): at least 3x on 4 x SmolLM2-135M and 5x on 4 x 1B, in the same run.",
        "",
        "Where the time goes (recycle/commands/merge.py, merger/config_merge.py): start-up imports torch,",
        "pydantic and the merger only (no transformers); the pool is mapped, not read into memory; each",
        "tensor is merged in 256K-element runs with mergekit's own operations (merger/exact.py), two tensors",
        "ahead of the writer on worker threads with one intra-op thread each (two intra-op threads waiting",
        "on each other made a loaded machine 10x slower); the output goes to disk with O_DIRECT through",
        "an aligned stage, around the page cache's per-page cost (merger/direct_io.py). mergekit runs with",
        "its defaults, as `mergekit-yaml config.yml OUT`. The machine was shared with other jobs (load",
        "above): absolute times vary several-fold from run to run, the ratio less.",
        "",
        "Equality beyond this config: tests/merger/test_mergekit_equality.py draws linear, task_arithmetic",
        "and ties configs (weights not summing to 1, gradients, filters, slices, dtype/out_dtype, bf16 and",
        "fp32 pools) and checks recycle's output against mergekit's: linear and task_arithmetic bit for",
        "bit, ties within one step of the output dtype (bit for bit in every draw so far), dare_linear and",
        "dare_ties statistically (kept share within 5 sigma of the density, entries kept by both identical,",
        "L1 norm restored by the rescale), and mergekit run on every export's mergekit.yaml bit for bit.",
        "",
    ]
    return "\n".join(lines)


def outputs_identical(a: Path, b: Path) -> bool:
    """Whether every tensor mergekit wrote is in recycle's output with the same bytes."""
    from safetensors import safe_open

    def tensors(path: Path) -> dict:
        found = {}
        for file in path.glob("*.safetensors"):
            with safe_open(str(file), "pt") as f:
                found.update({name: (file, name) for name in f.keys()})
        return found

    ours, theirs = tensors(a), tensors(b)
    if not set(theirs) <= set(ours):
        return False
    for name, (file, _) in theirs.items():
        with safe_open(str(file), "pt") as f, safe_open(str(ours[name][0]), "pt") as g:
            x, y = f.get_tensor(name), g.get_tensor(name)
            if x.dtype != y.dtype or not x.view(-1).view(torch_uint8()).equal(y.view(-1).view(torch_uint8())):
                return False
    return True


def torch_uint8():
    import torch

    return torch.uint8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default=str(ROOT / ".cache" / "bench-merge"))
    parser.add_argument("--checkpoints", type=int, default=4)
    parser.add_argument("--dtype", choices=["bf16", "fp32", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", default="1,0", help="intra-op thread counts to compare (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="a tiny model: a smoke run")
    parser.add_argument("--device", default="cpu", help="cuda: merge on the GPU (pool moved there, and staged from the CPU)")
    parser.add_argument("--race", action="store_true", help="recycle merge --config against mergekit-yaml")
    parser.add_argument("--race-pools", default="smollm2,1b", help="comma separated: smollm2, 1b, quick")
    parser.add_argument("--race-repeats", type=int, default=3)
    parser.add_argument("--write", help="with --race: write the figures as markdown here (docs/results/merge.md)")
    parser.add_argument("--render", help="a saved --race log (JSON lines) to write as markdown with --write")
    # Internal: what a child process measures.
    parser.add_argument("--_child", choices=["merge", "export"])
    parser.add_argument("--_pool", nargs="+")
    parser.add_argument("--_dtype-name", dest="dtype_name")
    parser.add_argument("--_threads", dest="threads", type=int, default=0)
    parser.add_argument("--_working-set-only", dest="working_set_only", action="store_true")
    parser.add_argument("--_export-dir", dest="export_dir")
    parser.add_argument("--_staged", dest="staged", action="store_true")
    parser.add_argument("--_eager", dest="eager", action="store_true")
    args = parser.parse_args()
    args.pool = args._pool

    if args._child == "merge":
        return child_merge(args)
    if args._child == "export":
        return child_export(args)

    cache = Path(args.cache)
    if args.render:
        records = [json.loads(line) for line in Path(args.render).read_text().splitlines() if line.startswith("{")]
        repeats = f" --race-repeats {args.race_repeats}" if args.race_repeats != 3 else ""
        Path(args.write).write_text(render_race(records, f"python bench/merge.py --race{repeats} --write {args.write}"))
        return
    if args.race:
        records = race(cache, args.race_pools.split(","), args.race_repeats)
        if args.write:
            command = "python bench/merge.py --race" + (f" --race-repeats {args.race_repeats}" if args.race_repeats != 3 else "")
            Path(args.write).write_text(render_race(records, command + f" --write {args.write}"))
        return
    shapes = QUICK if args.quick else FULL
    repeats = 3 if args.quick else args.repeats
    thread_counts = [int(t) for t in args.threads.split(",")]
    for dtype_name in (["bf16", "fp32"] if args.dtype == "both" else [args.dtype]):
        dirs = build_pool(cache, shapes, dtype_name, args.checkpoints)
        warm_page_cache(dirs)
        if args.device != "cpu":
            run_child("merge", dirs, dtype_name, 0, False, repeats, device=args.device)
            run_child("merge", dirs, dtype_name, 0, False, repeats, ["--_staged"], device=args.device)
            continue
        configs = [(1, True)] if args.quick else [(t, thp) for t in thread_counts for thp in (True, False)]
        for threads, thp in configs:
            run_child("merge", dirs, dtype_name, threads, thp, repeats)
            if dtype_name == "bf16":  # the eager path, for comparison (and where compiling fails)
                run_child("merge", dirs, dtype_name, threads, thp, repeats, ["--_eager"])
        if len(dirs) > 2:  # the working set must not grow with the number of checkpoints
            run_child("merge", dirs[:2], dtype_name, 1, True, repeats, ["--_working-set-only"])
        run_child("export", dirs, dtype_name, 1, True, repeats,
                  ["--_export-dir", str(cache / f"export-{dtype_name}")])


if __name__ == "__main__":
    main()
