"""Which kernels and threads run, decided in one place, from the device, the dtype and the
environment. `choose` returns an `Acceleration`; the model classes take it at construction (their
`decode_ops` and `decode_attention`), `LanguageModel.kv_spec` takes flash or SDPA from it, and the
Engine takes its prefill threads and autocast from it (the worker passes `lm.acceleration`).

What runs, by step:

| step | CPU (fp32, bf16, fp16) | CUDA fp16/bf16 | CUDA fp32 |
|---|---|---|---|
| decode step (1 token): blocks | compiled fused ops (inference.blocks.compiled_decode_ops: norm + GEMV, GEMVs + activation + residuals, inductor code called without TorchDynamo) | eager (`F.linear`) | eager |
| decode step: attention | compiled `DecodeAttention` (inference.decode_attention) when one query row per kv head (CodeGen, CodeGen2, XGLM, multi-head GPTBigCode), else SDPA (MQA/GQA) | `flash_attn_with_kvcache` if flash-attn imports, else SDPA | SDPA |
| prefill (many tokens) | eager blocks + SDPA; 64 tokens or more on `prefill_threads`, under bf16 autocast for an fp32 model where the CPU has AVX512-BF16/AMX and prefill_dtype is "auto" | eager + flash or SDPA | eager + SDPA |

In the server (`compile_in_background`) the model is ready with the eager column first; the
compiled ops and attention are built on a thread of their own and swapped in between two jobs
(inference.worker; `infill.stats` says the model's `decode`: "compiling", then "compiled").

With INFILL_LS_NO_COMPILE=1 or `compile_decode=False` (one-shot commands) nothing is compiled: a
decode step runs the eager blocks and SDPA, like a prefill. If compiling fails at the first call (no
C++ compiler) that op falls back to eager for good. Decode threads: INFILL_LS_THREADS, else every
core but one; prefill threads: INFILL_LS_PREFILL_THREADS, else every core.

So "what runs a decode step on CPU in bf16": the compiled block ops (inference.blocks, bf16 weights
read row by row and accumulated in fp32) and, for a multi-head model, the compiled decode attention
(the cache read once in bf16, fp32 inside); an MQA model (StarCoder) attends with SDPA; all on the
decode threads. With compiling off: eager `F.linear` blocks and SDPA (in fp32 for one query row per
kv head, attention.attend).

dtype "int8" (8-bit linear weights, inference.quantize) gets bfloat16's choice, the dtype of its
activations: the same compiled ops, whose graphs call the int8 kernel where a GEMV would be.

One override for tests and tools: `load_model(..., acceleration=Acceleration(...))` (or
`Engine(lm, acceleration=...)`) instead of environment variables or attributes. `Acceleration()` is
everything off (eager blocks, SDPA, no thread switch, the model's dtype); `dataclasses.replace(
lm.acceleration, prefill_autocast=torch.bfloat16)` changes one thing; `choose(device, dtype, env={})`
decides from a given environment instead of os.environ.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Mapping

import torch

from .attention import flash_available
from .blocks import compiled_decode_ops
from .decode_attention import DecodeAttention

log = logging.getLogger(__name__)

PREFILL_DTYPES = ("auto", "model")


@dataclass(frozen=True)
class Acceleration:
    """What runs; the defaults are everything off (see the module's table)."""
    compiled_decode_ops: bool = False  # one-token steps through inference.blocks.compiled_decode_ops
    compiled_decode_attention: bool = False  # one-token attention through inference.decode_attention
    flash: bool = False  # flash_attn_with_kvcache for attention (else SDPA); CUDA fp16/bf16 only
    decode_threads: int | None = None  # torch threads the worker decodes on (None: leave torch's setting)
    prefill_threads: int | None = None  # torch threads for a long prefill (None: the decode threads)
    prefill_autocast: torch.dtype | None = None  # a long prefill runs under autocast to this dtype
    # the compiled ops/attention run eager (SDPA) until the worker has built them on a thread of their
    # own and swapped them in between jobs: the model is ready without waiting for a compile
    compile_in_background: bool = False

    def decode_ops(self, act):
        """The block ops for one-token steps, or None: the eager ops (what a prefill runs)."""
        return compiled_decode_ops(act, deferred=self.compile_in_background) if self.compiled_decode_ops else None

    def decode_attention(self) -> DecodeAttention | None:
        """The compiled one-token attention, or None: SDPA."""
        return DecodeAttention(deferred=self.compile_in_background) if self.compiled_decode_attention else None

    def check(self, device: torch.device, dtype: torch.dtype) -> None:
        """ValueError when this choice cannot run a model on `device` in `dtype`."""
        if self.flash and not flash_available(device, dtype):
            raise ValueError(f"flash attention asked for, but flash-attn cannot run on {device} in {dtype} here")


def choose(device: torch.device, dtype: torch.dtype, env: Mapping[str, str] | None = None, *,
           compile_decode: bool = True, prefill_dtype: str = "auto",
           compile_in_background: bool = False) -> Acceleration:
    """The choice for a model on `device` in `dtype` (see the module's table). `env`: the environment
    to read (default os.environ); `compile_decode=False`: nothing compiled (one-shot commands);
    `prefill_dtype`: "auto" (bf16 prefill autocast where it pays) or "model";
    `compile_in_background` (the server's worker): what is compiled is built off the request path,
    eager until then (inference.worker)."""
    env = os.environ if env is None else env
    device = torch.device(device)
    compiled = (compile_decode and compiling_allowed(env) and device.type == "cpu"
                and dtype in (torch.float32, torch.bfloat16, torch.float16))
    return Acceleration(compiled_decode_ops=compiled, compiled_decode_attention=compiled,
                        flash=flash_available(device, dtype), decode_threads=inference_threads(env),
                        prefill_threads=prefill_threads(env),
                        prefill_autocast=prefill_autocast_for(device, dtype, prefill_dtype),
                        compile_in_background=compiled and compile_in_background)


def compiling_allowed(env: Mapping[str, str] | None = None) -> bool:
    """False when INFILL_LS_NO_COMPILE=1 (eager decode ops and attention: no compiler needed)."""
    return (os.environ if env is None else env).get("INFILL_LS_NO_COMPILE") != "1"


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _threads_from_env(env: Mapping[str, str] | None, name: str, default: int) -> int:
    """A positive thread count from environment variable `name`, else `default`."""
    value = (os.environ if env is None else env).get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else default


def inference_threads(env: Mapping[str, str] | None = None) -> int:
    """torch intra-op threads for the model: INFILL_LS_THREADS if set, else every core but one.
    Each operator waits for all of its threads, so when the threads outnumber the free cores (the
    editor, a build, the language server's own event loop) a decode step stalls on the scheduler: on
    a busy 2-core machine 2 threads decoded 10-30x slower than 1 (bench/typing_bench.py)."""
    return _threads_from_env(env, "INFILL_LS_THREADS", max(1, _cores() - 1))


def prefill_threads(env: Mapping[str, str] | None = None) -> int:
    """torch threads for a long prefill (opening a file, a jump): INFILL_LS_PREFILL_THREADS if set,
    else every core. A prefill is a few large matrix products, so a thread that starts late costs
    little, while decoding stays on `inference_threads()`."""
    return _threads_from_env(env, "INFILL_LS_PREFILL_THREADS", _cores())


def prefill_autocast_for(device: torch.device, dtype: torch.dtype, choice: str = "auto") -> torch.dtype | None:
    """bf16 for long prefills of an fp32 model on a CPU with bf16 matrix instructions (AVX512-BF16 or
    AMX): a prefill is compute-bound and runs about 1.5x faster there (the KV cache and decoding stay
    fp32). "model" (or any other device/dtype/CPU): None, the model's own dtype."""
    if choice not in PREFILL_DTYPES:
        raise ValueError(f"unknown prefill dtype {choice!r} (use {' or '.join(PREFILL_DTYPES)})")
    if choice != "auto" or torch.device(device).type != "cpu" or dtype != torch.float32:
        return None
    cpu = getattr(torch, "cpu", None)
    has_bf16 = any(getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return torch.bfloat16 if has_bf16 else None
