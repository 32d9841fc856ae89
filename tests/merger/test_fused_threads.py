"""The fused kernel's first call (dynamo tracing it) must not break a model forward in another thread.

The embedded runtime evaluates trials in threads. While dynamo traces, transformers' hub-kernel
layers (Llama attention, via the `kernels` package) keep their state in a process-wide global,
and a forward in another thread failed with "TypeError: expected an instance of Token".
"""

from __future__ import annotations

import threading
from contextlib import nullcontext

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from merger import fused

# A signature no other test traces (float16, 13 sources), so this test's call does trace.
SOURCES = 13


def tiny_llama() -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def forwards_while_a_kernel_is_traced(inside_gate: bool) -> list[BaseException]:
    """Two threads run forwards (as two evaluators do) while this one traces a new kernel."""
    models, ids = [tiny_llama(), tiny_llama()], torch.randint(0, 64, (2, 16))
    out = torch.empty(4096, dtype=torch.float16)
    sources = [torch.full((4096,), float(i), dtype=torch.float16) for i in range(SOURCES)]
    errors: list[BaseException] = []
    done = threading.Event()

    def evaluate(model):
        while not done.is_set():
            try:
                with fused.forward_pass() if inside_gate else nullcontext(), torch.no_grad():
                    model(input_ids=ids)
            except BaseException as error:  # noqa: BLE001 - collected for the assertion
                errors.append(error)

    workers = [threading.Thread(target=evaluate, args=(model,)) for model in models]
    for worker in workers:
        worker.start()
    try:
        assert fused.combine(out, sources, [1.0 / SOURCES] * SOURCES), fused._unavailable
    finally:
        done.set()
        for worker in workers:
            worker.join()
    assert float(out[0]) == pytest.approx(sum(range(SOURCES)) / SOURCES, rel=1e-2)
    return errors


def test_forwards_in_other_threads_survive_a_kernel_being_traced():
    # Without the gate (inside_gate=False) this failed 420 forwards of ~3300 here.
    if not fused.applies(torch.empty(1, dtype=torch.float16), [torch.empty(1, dtype=torch.float16)] * 2):
        pytest.skip("the fused kernel is unavailable here")
    assert forwards_while_a_kernel_is_traced(inside_gate=True) == []
