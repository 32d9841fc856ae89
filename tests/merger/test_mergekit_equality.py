"""`recycle merge --config` against mergekit 0.1.5 itself, on drawn configs and pools.

Configs are drawn (seeded) over every supported method, weights that do not sum to 1
(negative ones too), gradients, filters, normalize, lambda, density, dtype/out_dtype and
slices, on a bf16 and an fp32 pool of small Llamas (a base plus perturbed copies, so
task vectors are small as in real fine-tunes). mergekit runs them all in one process
(tests/merger/mergekit_reference.py). Targets: linear and task_arithmetic bit for bit;
ties within one rounding step of the output dtype; dare (random drops: mergekit's
stream of torch's global RNG over its task order is not replayed) statistically.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import transformers
import yaml
from safetensors.torch import load_file

from contracts.models import MergeSpec, WeightLayout
from merger import CheckpointPool, exact, export_merge
from merger.config_merge import merge_config
from merger_fixtures import spec_of
from mergekit_reference import run_mergekit

LLAMA = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
             vocab_size=320, max_position_embeddings=64, tie_word_embeddings=True)
DRAWS = {"linear": 6, "task_arithmetic": 5, "ties": 5}
BY_CLASS = WeightLayout(per="module_classes")  # embeddings, attention, mlp, norms: 4 x 4 weights on the bf16 pool


def build_pool(root: Path, dtype: torch.dtype, n: int) -> list[Path]:
    transformers.logging.set_verbosity_error()
    config = transformers.LlamaConfig(**LLAMA)
    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM(config)
    dirs = []
    for i in range(n):
        g = torch.Generator().manual_seed(100 + i)
        model = transformers.LlamaForCausalLM(config)
        with torch.no_grad():
            for (name, p), b in zip(model.named_parameters(), base.parameters()):
                p.copy_(b if i == 0 else b + 0.01 * torch.randn(p.shape, generator=g))
        model.to(dtype).save_pretrained(root / f"m{i}")
        dirs.append(root / f"m{i}")
    return dirs


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
    root = tmp_path_factory.mktemp("mergekit-pools")
    return {"bf16": build_pool(root / "bf16", torch.bfloat16, 4), "fp32": build_pool(root / "fp32", torch.float32, 3)}


def setting(rng: random.Random, low: float, high: float):
    """A scalar, a gradient over layers, or filtered conditions (mergekit's three forms)."""
    draw = rng.random()
    if draw < 0.5:
        return round(rng.uniform(low, high), 4)
    if draw < 0.8:
        return [round(rng.uniform(low, high), 4) for _ in range(rng.randint(2, 4))]
    return [{"filter": "self_attn", "value": round(rng.uniform(low, high), 4)},
            {"filter": "mlp", "value": [round(rng.uniform(low, high), 4) for _ in range(2)]},
            {"value": round(rng.uniform(low, high), 4)}]


def draw_config(rng: random.Random, method: str, dirs: list[Path]) -> dict:
    models = [str(d) for d in dirs[: rng.randint(2, len(dirs))]]
    config: dict = {"merge_method": method}
    if method == "linear":
        weights = [setting(rng, 0.05, 1.6) for _ in models]  # sums rarely 1
        parameters: dict = {"normalize": rng.random() < 0.6}
        inputs = models
    else:
        config["base_model"] = models[0]
        inputs = models[1:] if rng.random() < 0.5 else models  # the base listed or not
        weights = [setting(rng, -0.5, 1.5) for _ in inputs]
        parameters = {"normalize": rng.random() < 0.5}
        if rng.random() < 0.4:
            parameters["lambda"] = round(rng.uniform(0.5, 1.5), 3)
    entries = []
    for ref, weight in zip(inputs, weights):
        entry = {"model": ref, "parameters": {"weight": weight}}
        if method == "ties":
            entry["parameters"]["density"] = setting(rng, 0.1, 1.0)
        entries.append(entry)
    if rng.random() < 0.25 and (method == "linear" or inputs == models):  # slices list their base
        # Slices: two halves, each with its own parameters.
        half = LLAMA["num_hidden_layers"] // 2
        config["slices"] = [
            {"sources": [{**e, "layer_range": [0, half]} for e in entries]},
            {"sources": [{**e, "layer_range": [half, 2 * half]} for e in entries],
             "parameters": {"normalize": not parameters["normalize"]}},
        ]
    else:
        config["models"] = entries
    config["parameters"] = parameters
    dtype = rng.choice([None, "float32", "bfloat16"])
    if dtype:
        config["dtype"] = dtype
    out_dtype = rng.choice([None, None, "bfloat16", "float32"])
    if out_dtype:
        config["out_dtype"] = out_dtype
    return config


def read_dir(path: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in sorted(path.glob("*.safetensors")):
        tensors.update(load_file(str(file)))
    return tensors


def steps(a: torch.Tensor, b: torch.Tensor) -> int:
    """The largest distance between a and b in units of the dtype's last place (bit patterns)."""
    bits = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}[a.dtype]
    ia, ib = a.view(bits).long(), b.view(bits).long()
    sign = torch.iinfo(bits).min  # map sign-magnitude to a monotone integer line
    ia = torch.where(ia < 0, sign - ia, ia)
    ib = torch.where(ib < 0, sign - ib, ib)
    return int((ia - ib).abs().max()) if a.numel() else 0


def dare_configs(dirs: list[Path]) -> dict[str, dict]:
    """One task vector at a time (what is kept is then visible), and a dare_ties of three."""
    base, models = str(dirs[0]), [str(d) for d in dirs[1:]]
    single = {f"dare_linear-{density}-{rescale}": {
        "merge_method": "dare_linear", "base_model": base, "dtype": "float32", "out_dtype": "float32",
        "models": [{"model": models[0], "parameters": {"weight": 1.0, "density": density}}],
        "parameters": {"rescale": rescale}} for density in (0.3, 0.7) for rescale in (False, True)}
    single["dare_ties"] = {
        "merge_method": "dare_ties", "base_model": base,
        "models": [{"model": m, "parameters": {"weight": w, "density": d}} for m, w, d in zip(models, (0.8, 0.5, 1.2), (0.4, 0.6, 0.5))]}
    return single


@pytest.fixture(scope="module")
def merged(pools, tmp_path_factory):
    """Every drawn config and the dare configs, merged by mergekit (one process) and by recycle."""
    work = tmp_path_factory.mktemp("mergekit-drawn")
    rng = random.Random(20261206)
    cases = []
    for method, count in DRAWS.items():
        for k in range(count):
            pool = "bf16" if k % 3 != 2 else "fp32"
            cases.append((f"{method}-{k}-{pool}", method, draw_config(rng, method, pools[pool])))
    cases += [(name, config["merge_method"], config) for name, config in dare_configs(pools["bf16"]).items()]
    with pytest.MonkeyPatch.context() as patch:
        # Runs much shorter than these tensors (up to 20K elements): the result must not depend on them.
        patch.setattr(exact, "CHUNK_ELEMENTS", 4096)
        patch.setattr(exact, "LINEAR_CHUNK_ELEMENTS", 1000)
        for name, _, config in cases:
            (work / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            merge_config(work / f"{name}.yaml", work / f"rc-{name}", seed=7)
        exports = search_exports(pools, work)
    run_mergekit([{"config": str(work / f"{name}.yaml"), "out": str(work / f"mk-{name}"), "seed": 7}
                  for name, _, _ in cases]
                 + [{"config": str(work / f"rc-{name}" / "mergekit.yaml"), "out": str(work / f"mk-{name}")}
                    for name in exports], work)
    return {name: (method, config, read_dir(work / f"rc-{name}"), read_dir(work / f"mk-{name}"))
            for name, method, config in cases + [(name, "export", None) for name in exports]}


def search_exports(pools, work: Path) -> list[str]:
    """A search's exports (recycle export / best-merge) of every method, weights not on the simplex."""
    specs = {
        "export-linear": (MergeSpec(), [0.7, 0.2, 0.9, 0.4], None),
        "export-linear-pool-dtype": (MergeSpec(accumulate="pool"), [0.1, 0.2, 0.3, 0.9], None),
        "export-task-arithmetic": (MergeSpec(normalize=False, base="c0"), [0.0, 0.6, -0.3, 1.2], None),
        "export-ties": (MergeSpec(method="ties", normalize=False, base="c0"), [0.0, 0.6, 0.5, 0.8],
                        {"density": [1.0, 0.3, 0.7, 0.5]}),
        "export-ties-unnormalized": (MergeSpec(method="ties", normalize=False, base="c0", accumulate="pool"),
                                     [0.0, 1.1, 0.5, 0.8], {"density": 0.4, "normalize": False, "lambda": 0.8}),
        "export-task-arithmetic-method": (MergeSpec(method="task_arithmetic", normalize=False, base="c1"),
                                          [0.3, 0.0, 0.6, -0.4], None),
        **module_class_exports(),
    }
    with CheckpointPool.open(spec_of(pools["bf16"])) as pool:
        for name, (spec, weights, parameters) in specs.items():
            export_merge(pool, spec, weights, work / f"rc-{name}", parameters=parameters)
    return list(specs)


def module_class_exports() -> dict:
    """Weights per module class: written as {filter, value} conditions (mergekit has no slices for them)."""
    return {
        "export-module-classes": (MergeSpec(weights=BY_CLASS),
                                  [0.7, 0.2, 0.9, 0.4, 0.1, 0.1, 0.1, 0.7, 0.3, 0.3, 0.2, 0.2, 0.0, 0.5, 0.5, 1.0], None),
        "export-module-classes-task-arithmetic": (MergeSpec(normalize=False, base="c0", weights=BY_CLASS),
                                                  [0.0, 0.6, -0.3, 1.2, 0.0, 0.2, 0.2, 0.2, 0.0, 1.0, 0.0, 0.0,
                                                   0.0, -0.1, 0.4, 0.3], None),
    }


def test_module_class_exports_rerun_bit_for_bit_with_recycle_merge_config(pools, tmp_path):
    """The Llama's filters, and `recycle merge --config` on them giving the export's tensors."""
    with CheckpointPool.open(spec_of(pools["bf16"])) as pool:
        for name, (spec, weights, _) in module_class_exports().items():
            exported = export_merge(pool, spec, weights, tmp_path / name)
            config = yaml.safe_load((exported / "mergekit.yaml").read_text())
            filters = [c["filter"] for c in config["models"][-1]["parameters"]["weight"]]
            assert filters == ["norm", "embed_tokens", "self_attn", "mlp"], name  # tied: no lm_head
            rerun = read_dir(merge_config(exported / "mergekit.yaml", tmp_path / f"{name}-rerun"))
            ours = read_dir(exported)
            assert ours.keys() == rerun.keys() and all(torch.equal(ours[k], rerun[k]) for k in ours), name


@pytest.fixture(scope="module")
def drawn(merged):
    return {name: case for name, case in merged.items() if case[0] in DRAWS}


def test_exports_reproduce_bit_for_bit_with_mergekit(merged):
    """mergekit-yaml on the mergekit.yaml an export wrote gives the export's tensors, every method."""
    exports = {name: case for name, case in merged.items() if case[0] == "export"}
    assert len(exports) == 8
    for name, (_, _, ours, theirs) in exports.items():
        assert theirs and set(theirs) <= set(ours), name
        for tensor, want in theirs.items():
            assert ours[tensor].dtype == want.dtype and torch.equal(ours[tensor].view(torch.uint8), want.view(torch.uint8)), (name, tensor)


def test_every_drawn_config_matches_mergekit(drawn):
    methods_seen = set()
    for name, (method, config, ours, theirs) in drawn.items():
        methods_seen.add(method)
        assert set(theirs) <= set(ours), (name, sorted(set(theirs) - set(ours)))
        for tensor, want in theirs.items():
            got = ours[tensor]
            assert got.dtype == want.dtype, (name, tensor, got.dtype, want.dtype)
            if method in ("linear", "task_arithmetic"):
                assert torch.equal(got.view(torch.uint8) if got.dim() else got, want.view(torch.uint8) if want.dim() else want), (
                    name, tensor, float((got.float() - want.float()).abs().max()), yaml.safe_dump(config))
            else:
                assert steps(got, want) <= 1, (name, tensor, steps(got, want), yaml.safe_dump(config))
    assert methods_seen == set(DRAWS)


def test_drawn_configs_cover_what_they_should(drawn):
    """The draw is not degenerate: unnormalized sums, gradients, slices, dtypes all occur."""
    configs = [config for _, config, _, _ in drawn.values()]
    text = [yaml.safe_dump(c) for c in configs]
    assert any("slices" in c for c in configs) and any("models" in c for c in configs)
    assert any("filter" in t for t in text)
    assert any(isinstance(e["parameters"]["weight"], list) for c in configs if "models" in c for e in c["models"])
    assert {c.get("dtype") for c in configs} >= {None, "float32", "bfloat16"}
    assert any(c["parameters"]["normalize"] is False and c["merge_method"] == "linear" for c in configs)


def test_dare_drops_and_rescales_as_mergekit_does(merged, pools):
    """Per tensor: each implementation keeps a share of the task vector consistent with the
    density (binomial, 5 sigma), entries both kept are bit-identical, and with rescale the
    L1 norm of the task vector is restored (mergekit's RescaleNorm.l1)."""
    base, x = read_dir(pools["bf16"][0]), read_dir(pools["bf16"][1])
    checked = 0
    for name, (method, config, ours, theirs) in merged.items():
        if method != "dare_linear":
            continue
        density, rescale = config["models"][0]["parameters"]["density"], config["parameters"]["rescale"]
        for tensor, want in theirs.items():
            b, delta = base[tensor].float(), x[tensor].float() - base[tensor].float()
            moved = delta != 0
            n = int(moved.sum())
            if n < 4000:
                continue
            sigma = (density * (1 - density) / n) ** 0.5
            kept = {}
            for who, out in (("recycle", ours[tensor]), ("mergekit", want)):
                kept[who] = (out - b != 0) & moved
                share = float(kept[who].sum()) / n
                assert abs(share - density) < 5 * sigma, (name, tensor, who, share, density)
                if rescale:
                    l1 = float((out - b).abs().sum()) / float(delta.abs().sum())
                    assert l1 == pytest.approx(1.0, rel=2e-3), (name, tensor, who, l1)
            both = kept["recycle"] & kept["mergekit"]
            if not rescale:
                assert torch.equal(ours[tensor][both], want[both]), (name, tensor)
            checked += 1
    assert checked >= 20


def test_dare_ties_is_statistically_mergekit(merged):
    """Three task vectors, drops and sign election: per tensor the mean change from the base
    and the share of entries left at the base agree within sampling noise."""
    _, config, ours, theirs = merged["dare_ties"]
    base = read_dir(Path(config["base_model"]))
    for tensor, want in theirs.items():
        if want.numel() < 4000:
            continue
        b = base[tensor].float()
        ours_change, their_change = (ours[tensor].float() - b).abs(), (want.float() - b).abs()
        assert float(ours_change.mean()) == pytest.approx(float(their_change.mean()), rel=0.05), tensor
        unchanged = float((ours_change == 0).float().mean()), float((their_change == 0).float().mean())
        assert unchanged[0] == pytest.approx(unchanged[1], abs=0.03), tensor
