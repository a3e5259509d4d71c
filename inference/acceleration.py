"""Which kernels and threads run, decided in one place, from the device, the dtype and the
environment. `choose` returns an `Acceleration`; the loader puts its decode ops and decode attention
on the model, the worker gives its threads and prefill autocast to the Engine. Tests that want
another choice build an Acceleration themselves (or set INFILL_LS_NO_COMPILE=1 for eager).

What runs, by step:

| step | CPU (fp32, bf16, fp16) | CUDA fp16/bf16 | CUDA fp32 |
|---|---|---|---|
| decode step (1 token): blocks | torch.compile'd fused ops (inference.blocks.compiled_decode_ops) | eager | eager |
| decode step: attention | compiled DecodeAttention (inference.decode_attention) | flash_attn_with_kvcache if flash-attn is installed, else SDPA | SDPA |
| prefill (many tokens) | eager blocks + SDPA, on `prefill_threads`, bf16 autocast for an fp32 model where the CPU has AVX512-BF16/AMX | eager + flash or SDPA | eager + SDPA |

Compiling is off with INFILL_LS_NO_COMPILE=1 or `compile_decode=False` (one-shot commands); if it
fails (no C++ compiler) the eager build is used. Decode threads: INFILL_LS_THREADS, else every core
but one; prefill threads: INFILL_LS_PREFILL_THREADS, else every core.

So "what runs a decode step on CPU in bf16": the compiled block ops and the compiled decode
attention, in bf16, on the decode threads; SDPA where compiling is off.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from .attention import flash_available

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Acceleration:
    compiled_decode_ops: bool  # one-token steps through inference.blocks.compiled_decode_ops (eager inside
    # when compiling is off)
    compiled_decode_attention: bool  # one-token attention through inference.decode_attention
    flash: bool  # flash_attn_with_kvcache for attention (else SDPA)
    decode_threads: int
    prefill_threads: int
    prefill_autocast: torch.dtype | None  # a long prefill runs under autocast to this dtype


def choose(device: torch.device, dtype: torch.dtype, compile_decode: bool = True,
           prefill_dtype: str = "auto") -> Acceleration:
    """The choice for a model on `device` in `dtype` (see the module's table)."""
    compiled = compile_decode and device.type == "cpu" and dtype in (torch.float32, torch.bfloat16, torch.float16)
    return Acceleration(compiled, compiled and compiling_allowed(), flash_available(device, dtype),
                        inference_threads(), prefill_threads(), prefill_autocast_for(device, dtype, prefill_dtype))


def compiling_allowed() -> bool:
    """False when INFILL_LS_NO_COMPILE=1 (eager decode ops and attention: no compiler needed)."""
    return os.environ.get("INFILL_LS_NO_COMPILE") != "1"


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _threads_from_env(name: str, default: int) -> int:
    """A positive thread count from environment variable `name`, else `default`."""
    env = os.environ.get(name, "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else default


def inference_threads() -> int:
    """torch intra-op threads for the model: INFILL_LS_THREADS if set, else every core but one.
    Each operator waits for all of its threads, so when the threads outnumber the free cores (the
    editor, a build, the language server's own event loop) a decode step stalls on the scheduler: on
    a busy 2-core machine 2 threads decoded 10-30x slower than 1 (bench/typing_bench.py)."""
    return _threads_from_env("INFILL_LS_THREADS", max(1, _cores() - 1))


def prefill_threads() -> int:
    """torch threads for a long prefill (opening a file, a jump): INFILL_LS_PREFILL_THREADS if set,
    else every core. A prefill is a few large matrix products, so a thread that starts late costs
    little, while decoding stays on `inference_threads()`."""
    return _threads_from_env("INFILL_LS_PREFILL_THREADS", _cores())


def prefill_autocast_for(device: torch.device, dtype: torch.dtype, choice: str = "auto") -> torch.dtype | None:
    """bf16 for long prefills of an fp32 model on a CPU with bf16 matrix instructions (AVX512-BF16 or
    AMX): a prefill is compute-bound and runs about 1.5x faster there (the KV cache and decoding stay
    fp32). "model" (or any other device/dtype/CPU): None, the model's own dtype."""
    if choice != "auto" or getattr(device, "type", None) != "cpu" or dtype != torch.float32:
        return None
    cpu = getattr(torch, "cpu", None)
    has_bf16 = any(getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return torch.bfloat16 if has_bf16 else None


def prefill_autocast_dtype(lm, choice: str) -> torch.dtype | None:
    """`prefill_autocast_for` a loaded model."""
    return prefill_autocast_for(getattr(lm, "device", None), getattr(lm, "dtype", None), choice)
