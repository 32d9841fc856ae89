"""GPU paths: a pool moved to the device, CPU pools merged into device outputs, no
allocations on repeated merges. Skipped where there is no CUDA device (CI)."""

from __future__ import annotations

import pytest
import torch

from contracts.models import MergeSpec
from merger import CheckpointPool, allocate_outputs, export_merge, make_method, merge_into
from merger_fixtures import spec_of

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

WEIGHTS = [0.1, 0.2, 0.3, 0.4]


def cpu_merge(pool, spec, weights):
    out = allocate_outputs(pool)
    merge_into(pool, spec, weights, out)
    return out


def close_to(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype == torch.bfloat16:  # different summation order: one bf16 ulp at most
        return bool(((a.float() - b.float()).abs() <= b.float().abs() * 2**-7 + 1e-8).all())
    return torch.allclose(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("which", ["gpt2_dirs", "gpt2_bf16_dirs"])
def test_pool_on_device(request, which):
    dirs = request.getfixturevalue(which)
    weights = WEIGHTS[: len(dirs)]
    with CheckpointPool.open(spec_of(dirs)) as pool:
        gpu = pool.to_device("cuda")
        assert gpu.device.type == "cuda" and gpu.tensor(0, pool.tensor_names[0]).is_cuda
        out = allocate_outputs(gpu, device="cuda")
        make_method(gpu, MergeSpec()).merge_into(weights, out)
        expected = cpu_merge(pool, MergeSpec(), weights)
        for name in pool.tensor_names:
            assert out[name].is_cuda
            assert close_to(out[name].cpu(), expected[name]), name


def test_cpu_pool_into_device_outputs(gpt2_bf16_dirs):
    with CheckpointPool.open(spec_of(gpt2_bf16_dirs)) as pool:
        out = allocate_outputs(pool, device="cuda")
        merge_into(pool, MergeSpec(), WEIGHTS, out)  # staged through a reused device buffer
        expected = cpu_merge(pool, MergeSpec(), WEIGHTS)
        assert all(close_to(out[n].cpu(), expected[n]) for n in pool.tensor_names)


def test_task_arithmetic_on_device(gpt2_dirs):
    spec = MergeSpec(normalize=False, base="c0")
    with CheckpointPool.open(spec_of(gpt2_dirs)) as pool:
        gpu = pool.to_device("cuda")
        out = allocate_outputs(gpu, device="cuda")
        merge_into(gpu, spec, [0, 0.5, -0.3], out)
        expected = cpu_merge(pool, spec, [0, 0.5, -0.3])
        assert all(close_to(out[n].cpu(), expected[n]) for n in pool.tensor_names)


def test_repeated_device_merges_allocate_nothing(gpt2_bf16_dirs):
    with CheckpointPool.open(spec_of(gpt2_bf16_dirs)) as pool:
        gpu = pool.to_device("cuda")
        method = make_method(gpu, MergeSpec())
        out = allocate_outputs(gpu, device="cuda")
        method.merge_into(WEIGHTS, out)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        allocated = torch.cuda.memory_allocated()
        ptrs = {n: t.data_ptr() for n, t in out.items()}
        method.merge_into(list(reversed(WEIGHTS)), out)
        torch.cuda.synchronize()
        # Mixed bf16 -> fp32 adds cast inside the kernel on CUDA: no temporaries at all.
        assert torch.cuda.max_memory_allocated() == allocated
        assert {n: t.data_ptr() for n, t in out.items()} == ptrs


def test_export_from_device_pool(gpt2_dirs, tmp_path):
    import transformers

    with CheckpointPool.open(spec_of(gpt2_dirs)) as pool:
        out_dir = export_merge(pool.to_device("cuda"), MergeSpec(), [1, 2, 3], tmp_path / "gpu-export")
        model = transformers.AutoModelForCausalLM.from_pretrained(out_dir)
        expected = cpu_merge(pool, MergeSpec(), [1, 2, 3])
        state = model.state_dict()
        assert all(close_to(state[n], expected[n]) for n in pool.tensor_names)
