"""inference.acceleration decides what runs from the device, the dtype and the environment, and the
constructors take that choice: the model its decode ops and decode attention, the KV cache flash or
SDPA, the Engine its prefill threads and autocast, the worker's engine the spec's prefill dtype.
`load_model(..., acceleration=)` is the one override, and wins over the environment."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from inference.acceleration import Acceleration, choose
from inference.api import ModelError, ModelSpec
from inference.attention import flash_available
from inference.blocks import _CompiledOrEager
from inference.decode_attention import DecodeAttention
from inference.engine import Engine
from inference.loader import load_model
from inference.worker import InferenceWorker
from tests import checkpoints as ck

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cpu_decode_is_compiled_unless_switched_off(dtype):
    acc = choose(CPU, dtype, env={})
    assert acc.compiled_decode_ops and acc.compiled_decode_attention and not acc.flash
    off = choose(CPU, dtype, env={"INFILL_LS_NO_COMPILE": "1"})
    assert (off.compiled_decode_ops, off.compiled_decode_attention) == (False, False)
    one_shot = choose(CPU, dtype, env={}, compile_decode=False)
    assert (one_shot.compiled_decode_ops, one_shot.compiled_decode_attention) == (False, False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_decode_is_eager_with_flash_where_it_runs(dtype):
    acc = choose(CUDA, dtype, env={})
    assert not acc.compiled_decode_ops and not acc.compiled_decode_attention
    assert acc.flash == flash_available(CUDA, dtype)
    if dtype == torch.float32:
        assert not acc.flash  # flash-attn has no fp32 kernels: SDPA


def test_the_choice_builds_the_model(starcoder):
    """load_model's acceleration: compiled ops and attention when asked, even under the suite's
    INFILL_LS_NO_COMPILE=1; none with Acceleration(); the LanguageModel keeps what it was built with."""
    acc = choose(CPU, torch.float32, env={})
    lm = load_model(starcoder, acceleration=acc)
    assert lm.acceleration is acc
    ops = lm.model.decode_ops
    assert all(isinstance(getattr(ops, name), _CompiledOrEager) for name in ("attn_in", "sequential_out", "head"))
    assert isinstance(lm.model.decode_attention, DecodeAttention)
    assert lm.kv_spec().decode is lm.model.decode_attention and not lm.kv_spec().flash

    eager = load_model(starcoder, acceleration=Acceleration())
    assert eager.model.decode_ops is None and eager.model.decode_attention is None
    assert eager.kv_spec().decode is None
    default = load_model(starcoder)  # the environment's choice: the suite runs with INFILL_LS_NO_COMPILE=1
    assert default.acceleration == choose(CPU, torch.float32, prefill_dtype="model")  # load_model's default
    assert default.model.decode_ops is None


def test_flash_asked_for_where_it_cannot_run_is_a_clear_error(starcoder):
    with pytest.raises(ModelError, match="flash attention asked for, but flash-attn cannot run on cpu"):
        load_model(starcoder, acceleration=Acceleration(flash=True))


def test_engine_takes_prefill_threads_and_autocast(starcoder):
    lm = load_model(starcoder, acceleration=Acceleration(prefill_threads=3, prefill_autocast=torch.bfloat16))
    assert (Engine(lm).prefill_threads, Engine(lm).prefill_autocast) == (None, None)  # no choice given: as called
    eng = Engine(lm, acceleration=lm.acceleration)
    assert (eng.prefill_threads, eng.prefill_autocast) == (3, torch.bfloat16)
    eng = Engine(lm, acceleration=replace(lm.acceleration, prefill_autocast=None))
    assert (eng.prefill_threads, eng.prefill_autocast) == (3, None)


@pytest.mark.parametrize("prefill_dtype,autocast", [("auto", torch.bfloat16), ("model", None)])
def test_worker_engine_gets_the_spec_prefill_dtype_and_env_threads(starcoder, monkeypatch, prefill_dtype, autocast):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setenv("INFILL_LS_PREFILL_THREADS", "1")
    before = torch.get_num_threads()
    worker = InferenceWorker()
    try:
        worker.load(ModelSpec(str(starcoder), "cpu", "float32", 2**20, prefill_dtype)).result(120)
        assert worker.lm.acceleration.prefill_autocast == autocast
        assert (worker.engine.prefill_threads, worker.engine.prefill_autocast) == (1, autocast)
    finally:
        worker.shutdown()
        torch.set_num_threads(before)
