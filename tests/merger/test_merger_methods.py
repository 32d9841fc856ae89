"""Merges against a plain torch reference, weight validation, the registry, and the hot path's
promise: no copies of the pool, no new allocations on repeated merges."""

from __future__ import annotations

import math

import pytest
import torch

import merger.methods as methods
from merger import exact, linear_kernels
from merger import fused
from contracts.models import MergeSpec
from merger import (
    MERGE_METHODS,
    CheckpointPool,
    Linear,
    MergeMethod,
    MethodError,
    Scratch,
    WeightsError,
    allocate_outputs,
    get_method,
    make_method,
    merge_into,
    register_method,
)
from merger_fixtures import spec_of


def reference(pool: CheckpointPool, coeffs: list[float]) -> dict[str, torch.Tensor]:
    """The obvious fp32 merge: sum of c_i * x_i, integer tensors from checkpoint 0."""
    out = {}
    for name in pool.tensor_names:
        if not pool.dtype(name).is_floating_point:
            out[name] = pool.tensor(0, name).clone()
            continue
        out[name] = sum(c * pool.tensor(i, name).double() for i, c in enumerate(coeffs)).float()
    return out


def assert_merged(out, expected, names, atol=1e-6, dtype=None):
    for name in names:
        want = expected[name] if dtype is None or not expected[name].is_floating_point else expected[name].to(dtype)
        assert out[name].dtype == want.dtype, name
        torch.testing.assert_close(out[name], want, atol=atol, rtol=0 if dtype is None else None, msg=name)


@pytest.fixture
def gpt2_pool(gpt2_dirs):
    with CheckpointPool.open(spec_of(gpt2_dirs)) as pool:
        yield pool


@pytest.fixture
def raw_pool(raw_files):
    with CheckpointPool.open(spec_of(raw_files)) as pool:
        yield pool


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 1000 elements, so tiny tensors take the multi-chunk path too."""
    monkeypatch.setattr(linear_kernels, "CPU_CHUNK_ELEMENTS", 1000)
    monkeypatch.setattr(exact, "CHUNK_ELEMENTS", 1000)
    monkeypatch.setattr(exact, "LINEAR_CHUNK_ELEMENTS", 1000)


# -- linear merges against the reference -------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
def test_normalized_fp32(gpt2_pool, request, chunked):
    if chunked:
        request.getfixturevalue("small_chunks")
    out = allocate_outputs(gpt2_pool)
    merge_into(gpt2_pool, MergeSpec(), [2.0, 1.0, -3.0], out)  # clipped to [2, 1, 0], then /3
    assert_merged(out, reference(gpt2_pool, [2 / 3, 1 / 3, 0.0]), gpt2_pool.tensor_names)


def test_unnormalized_fp32(gpt2_pool):
    out = allocate_outputs(gpt2_pool)
    merge_into(gpt2_pool, MergeSpec(normalize=False), [0.7, -0.4, 1.1], out)
    assert_merged(out, reference(gpt2_pool, [0.7, -0.4, 1.1]), gpt2_pool.tensor_names)


def test_unnormalized_all_zero_gives_zeros(gpt2_pool):
    out = allocate_outputs(gpt2_pool)
    merge_into(gpt2_pool, MergeSpec(normalize=False), [0.0, 0.0, 0.0], out)
    assert all(not out[n].any() for n in gpt2_pool.tensor_names)


def test_single_checkpoint_weight_reproduces_it(gpt2_pool):
    out = allocate_outputs(gpt2_pool)
    merge_into(gpt2_pool, MergeSpec(), [0, 5, 0], out)
    for name in gpt2_pool.tensor_names:
        assert torch.equal(out[name], gpt2_pool.tensor(1, name)), name


def test_sharded_pool(gpt2_sharded_dirs, small_chunks):
    with CheckpointPool.open(spec_of(gpt2_sharded_dirs)) as pool:
        out = allocate_outputs(pool)
        merge_into(pool, MergeSpec(), [0.2, 0.3, 0.5], out)
        assert_merged(out, reference(pool, [0.2, 0.3, 0.5]), pool.tensor_names)


def test_task_arithmetic_against_base(gpt2_pool):
    spec = MergeSpec(normalize=False, base="c1")
    out = allocate_outputs(gpt2_pool)
    weights = [0.6, 123.0, -0.25]  # the base's own weight is ignored
    merge_into(gpt2_pool, spec, weights, out)
    for name in gpt2_pool.tensor_names:
        base, x0, x2 = (gpt2_pool.tensor(i, name).double() for i in (1, 0, 2))
        want = (base + 0.6 * (x0 - base) - 0.25 * (x2 - base)).float()
        torch.testing.assert_close(out[name], want, atol=1e-6, rtol=0, msg=name)
    method = make_method(gpt2_pool, spec)
    assert method.check_weights(weights) == [0.6, 0.0, -0.25]
    assert method.coefficients(weights) == pytest.approx([0.6, 0.65, -0.25])


def test_task_arithmetic_base_must_be_in_pool(gpt2_pool):
    with pytest.raises(MethodError, match=r"merge base 'other' is not a checkpoint of pool 'pool' \(c0, c1, c2\)"):
        make_method(gpt2_pool, MergeSpec(normalize=False, base="other"))


@pytest.fixture(params=["fused", "eager"])
def half_precision_path(request, monkeypatch):
    """bf16 merges on the CPU run a compiled one-pass kernel (merger/fused.py), eager torch where it can't."""
    if request.param == "eager":
        monkeypatch.setattr(fused, "combine", lambda *args: False)
    return request.param


def test_bf16_accumulates_in_fp32(gpt2_bf16_dirs, small_chunks, half_precision_path):
    with CheckpointPool.open(spec_of(gpt2_bf16_dirs)) as pool:
        weights = [0.1, 0.2, 0.3, 0.4]
        out = allocate_outputs(pool)
        merge_into(pool, MergeSpec(), weights, out)
        expected = reference(pool, weights)  # summed in fp64/fp32, then cast once
        for name in pool.tensor_names:
            assert out[name].dtype == torch.bfloat16
            want = expected[name].bfloat16()
            # fp32 accumulation, one rounding to bf16: within one bf16 ulp of the reference
            # (plus fp32's own absolute error where terms cancel to ~0).
            ulp = want.float().abs() * 2**-7 + 1e-8
            assert ((out[name].float() - want.float()).abs() <= ulp).all(), name


def test_bf16_accumulating_in_pool_dtype(gpt2_bf16_dirs):
    with CheckpointPool.open(spec_of(gpt2_bf16_dirs)) as pool:
        weights = [0.1, 0.2, 0.3, 0.4]
        out = allocate_outputs(pool)
        merge_into(pool, MergeSpec(accumulate="pool"), weights, out)
        expected = reference(pool, weights)
        for name in pool.tensor_names:
            # Four bf16 roundings: a few ulps, still close.
            torch.testing.assert_close(out[name].float(), expected[name], atol=1e-3, rtol=3e-2, msg=name)


def test_fp32_pool_into_bf16_outputs(gpt2_pool):
    out = allocate_outputs(gpt2_pool, dtype=torch.bfloat16)
    merge_into(gpt2_pool, MergeSpec(), [1, 1, 1], out)
    expected = reference(gpt2_pool, [1 / 3] * 3)
    for name in gpt2_pool.tensor_names:
        want = expected[name].bfloat16().float()
        assert out[name].dtype == torch.bfloat16
        assert ((out[name].float() - want).abs() <= want.abs() * 2**-7 + 1e-8).all(), name


def test_mixed_dtypes_and_integer_buffers(raw_pool, small_chunks):
    out = allocate_outputs(raw_pool)
    merge_into(raw_pool, MergeSpec(normalize=False), [0.5, 0.25, 0.0, 2.0], out)
    expected = reference(raw_pool, [0.5, 0.25, 0.0, 2.0])
    assert_merged(out, expected, ["w", "b", "scalar"])
    torch.testing.assert_close(out["half"], expected["half"].half(), msg="half")
    assert torch.equal(out["steps"], raw_pool.tensor(0, "steps"))  # copied from checkpoint 0
    assert torch.equal(out["mask"], raw_pool.tensor(0, "mask"))


def test_merge_into_model_parameters(gpt2_pool):
    """Outputs may be a live model's parameters (requires_grad, extra tied entries)."""
    import transformers

    from merger_fixtures import gpt2_config

    model = transformers.GPT2LMHeadModel(gpt2_config())
    params = dict(model.named_parameters())
    merge_into(gpt2_pool, MergeSpec(), [1, 0, 0], params)
    assert torch.equal(model.transformer.wte.weight, gpt2_pool.tensor(0, "transformer.wte.weight"))
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()


def test_non_contiguous_outputs(raw_pool):
    out = allocate_outputs(raw_pool)
    out["w"] = torch.empty(48, 64).t()  # right shape, transposed storage
    merge_into(raw_pool, MergeSpec(), [1, 1, 1, 1], out)
    torch.testing.assert_close(out["w"], reference(raw_pool, [0.25] * 4)["w"], atol=1e-6, rtol=0)


def test_bad_outputs(raw_pool):
    out = allocate_outputs(raw_pool)
    del out["b"]
    with pytest.raises(ValueError, match="outputs lack tensor 'b'"):
        merge_into(raw_pool, MergeSpec(), [1, 1, 1, 1], out)
    out = allocate_outputs(raw_pool)
    out["w"] = torch.empty(48, 64)
    with pytest.raises(ValueError, match=r"output tensor 'w' has shape \[48, 64\], the pool's is \[64, 48\]"):
        merge_into(raw_pool, MergeSpec(), [1, 1, 1, 1], out)


# -- weights ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "weights, spec, message",
    [
        ([1.0, 2.0], MergeSpec(), r"got 2 weights for the 3 checkpoints of pool 'pool' \(c0, c1, c2\)"),
        ([1.0, 2.0, 3.0, 4.0], MergeSpec(), "got 4 weights for the 3 checkpoints"),
        ([1.0, math.nan, 1.0], MergeSpec(), "weight of checkpoint 'c1' is nan: weights must be finite"),
        ([math.inf, 1.0, 1.0], MergeSpec(normalize=False), "weight of checkpoint 'c0' is inf"),
        ([0.0, 0.0, 0.0], MergeSpec(), "all weights are zero or negative"),
        ([-1.0, 0.0, -2.0], MergeSpec(), "all weights are zero or negative"),
        (["a", 1, 2], MergeSpec(), "weights must be numbers"),
    ],
)
def test_bad_weights(gpt2_pool, weights, spec, message):
    out = allocate_outputs(gpt2_pool)
    with pytest.raises(WeightsError, match=message):
        merge_into(gpt2_pool, spec, weights, out)
    assert isinstance(WeightsError("x"), ValueError)


def test_normalization(gpt2_pool):
    method = make_method(gpt2_pool, MergeSpec())
    assert method.check_weights([1, -5, 3]) == [0.25, 0.0, 0.75]
    assert make_method(gpt2_pool, MergeSpec(normalize=False)).check_weights([1, -5, 3]) == [1.0, -5.0, 3.0]


# -- registry --------------------------------------------------------------------


def test_registry():
    assert MERGE_METHODS["linear"] is Linear
    assert get_method("linear") is Linear
    assert {"linear", "task_arithmetic", "ties", "dare_linear", "dare_ties"} <= set(MERGE_METHODS)
    with pytest.raises(MethodError, match=r"unknown merge method 'slerp'; known methods: .*linear"):
        get_method("slerp")


def test_register_a_method(gpt2_pool, monkeypatch):
    monkeypatch.setattr(methods, "MERGE_METHODS", dict(MERGE_METHODS))

    @register_method("first")
    class First(MergeMethod):
        def merge_tensor(self, prepared, name, out, scratch):
            out.copy_(self.pool.tensor(0, name))

    out = allocate_outputs(gpt2_pool)
    merge_into(gpt2_pool, MergeSpec(method="first"), [1, 1, 1], out)
    assert torch.equal(out["transformer.wpe.weight"], gpt2_pool.tensor(0, "transformer.wpe.weight"))


# -- the hot path: zero copies, zero allocations ------------------------------------


def test_fused_and_eager_bf16_merges_agree(gpt2_bf16_dirs, monkeypatch):
    with CheckpointPool.open(spec_of(gpt2_bf16_dirs)) as pool:
        weights = [0.4, 0.3, 0.2, 0.1]
        compiled, eager = allocate_outputs(pool), allocate_outputs(pool)
        merge_into(pool, MergeSpec(), weights, compiled)
        assert fused._unavailable is None and fused._kernels, "the fused kernel should run here"
        monkeypatch.setattr(fused, "combine", lambda *args: False)
        merge_into(pool, MergeSpec(), weights, eager)
        for name in pool.tensor_names:
            # Same fp32 sum, rounded once; the order of fused multiply-adds may differ: one ulp.
            ulp = eager[name].float().abs() * 2**-7 + 1e-8
            assert ((compiled[name].float() - eager[name].float()).abs() <= ulp).all(), name


def test_fused_kernel_serves_every_number_of_sources(gpt2_bf16_dirs):
    """A search merges 1 (singles), 2, 3 (greedy soup steps) and all (uniform, strategies) checkpoints."""
    with CheckpointPool.open(spec_of(gpt2_bf16_dirs)) as pool:
        method, out = make_method(pool, MergeSpec()), allocate_outputs(pool)
        for weights in ([1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 2, 3, 4], [0, 1, 1, 0], [0, 0, 1, 1]):
            method.merge_into(weights, out)
            expected = reference(pool, [w / sum(weights) for w in weights])
            for name in pool.tensor_names:
                want = expected[name].bfloat16().float()
                assert ((out[name].float() - want).abs() <= want.abs() * 2**-7 + 1e-8).all(), name
        assert fused._unavailable is None and {2, 3, 4} <= set(fused._kernels)


def test_large_fp32_merges_take_the_fused_kernel(gpt2_pool, monkeypatch):
    """fp32 outputs of at least FP32_MIN_ELEMENTS go through the one-pass kernel (here lowered
    so the tiny pool qualifies); smaller ones stay eager, as compiling would cost more."""
    calls = []
    combine = fused.combine
    monkeypatch.setattr(fused, "combine", lambda out, xs, c: calls.append(out.numel()) or combine(out, xs, c))
    weights = [0.5, 0.3, 0.2]
    eager = allocate_outputs(gpt2_pool)
    merge_into(gpt2_pool, MergeSpec(), weights, eager)
    assert not fused.applies(eager[gpt2_pool.tensor_names[0]], [gpt2_pool.tensor(0, gpt2_pool.tensor_names[0])] * 3)
    monkeypatch.setattr(fused, "FP32_MIN_ELEMENTS", 1)
    compiled = allocate_outputs(gpt2_pool)
    merge_into(gpt2_pool, MergeSpec(), weights, compiled)
    assert fused._unavailable is None and calls
    assert_merged(compiled, reference(gpt2_pool, weights), gpt2_pool.tensor_names, atol=1e-6)


def test_repeated_merges_allocate_nothing(gpt2_bf16_dirs, small_chunks, monkeypatch):
    """Outputs stay where they are, and the scratch is reused (bf16: fp32 accumulator).
    On the eager path: the fused kernel allocates nothing by construction."""
    monkeypatch.setattr(fused, "combine", lambda *args: False)
    with CheckpointPool.open(spec_of(gpt2_bf16_dirs)) as pool:
        method = make_method(pool, MergeSpec())
        out = allocate_outputs(pool)
        ptrs = {n: t.data_ptr() for n, t in out.items()}
        method.merge_into([1, 2, 3, 4], out)
        scratch_ptrs = {k: b.data_ptr() for k, b in method.scratch._buffers.items()}
        assert scratch_ptrs, "bf16 with fp32 accumulation uses scratch"
        first = {n: t.clone() for n, t in out.items()}

        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            method.merge_into([4, 3, 2, 1], out)
        allocated = sum(e.cpu_memory_usage for e in prof.key_averages() if e.cpu_memory_usage > 0)
        # Only the scalar wrappers of the weights (a few bytes each) may appear.
        assert allocated < 1024, [(e.key, e.cpu_memory_usage) for e in prof.key_averages() if e.cpu_memory_usage]
        assert {n: t.data_ptr() for n, t in out.items()} == ptrs
        assert {k: b.data_ptr() for k, b in method.scratch._buffers.items()} == scratch_ptrs
        method.merge_into([1, 2, 3, 4], out)
        assert all(torch.equal(out[n], first[n]) for n in out)


def test_fp32_merge_needs_no_scratch(gpt2_pool):
    method = make_method(gpt2_pool, MergeSpec())
    out = allocate_outputs(gpt2_pool)
    method.merge_into([1, 2, 3], out)
    assert method.scratch._buffers == {}


def test_explicit_scratch_is_used(gpt2_bf16_dirs, monkeypatch):
    monkeypatch.setattr(fused, "combine", lambda *args: False)  # the eager path's scratch
    with CheckpointPool.open(spec_of(gpt2_bf16_dirs)) as pool:
        scratch = Scratch()
        out = allocate_outputs(pool)
        merge_into(pool, MergeSpec(), [1, 1, 1, 1], out, scratch=scratch)
        assert scratch._buffers


def test_merge_reads_the_mapping_not_a_copy(gpt2_pool):
    """The views handed to the merge live inside the file mapping."""
    ranges = []
    for line in open("/proc/self/maps"):
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].strip().endswith("model.safetensors"):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((start, end))
    for i in range(len(gpt2_pool)):
        for name in gpt2_pool.tensor_names:
            t = gpt2_pool.tensor(i, name)
            assert any(s <= t.data_ptr() and t.data_ptr() + t.nbytes <= e for s, e in ranges), (i, name)
