"""Decoder block pieces as free functions of tensors, shared by the families, in two builds:

- eager (`F.linear`): prefill, and every step on CUDA;
- compiled decode ops on CPU (fp32, bf16, fp16): decoding one token is a chain of matrix-vector
  products whose speed is the speed of reading the weights. Stock CPU GEMV runs far below memory
  bandwidth (measured on one core: fp32 `F.linear` 6-8 GB/s, bf16 slower still, while a plain sum
  reads 27 GB/s), whereas a torch.compile'd row reduction — read the row, widen to fp32 in
  registers, accumulate — reads 14-23 GB/s. Each piece (norm + GEMV; GEMVs + activation + residuals)
  is one compiled call, so a layer costs two calls around the eager attention.
  If compiling fails (no C++ compiler...), the eager build is used. INFILL_LS_NO_COMPILE=1 skips it.

Attention (and CodeGen's rotary) stays outside: it touches the KV cache.
"""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


def rowwise_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """x (1, K) @ w (N, K).T (+ b), accumulated in fp32: the decode GEMV that gets compiled."""
    y = (x[:, None, :].float() * w.float()).sum(-1)
    if b is not None:
        y = y + b.float()
    return y.to(x.dtype)


def attn_in(lin, x, ln_w, ln_b, eps, qkv_w, qkv_b):
    """-> (normed x, fused qkv)."""
    h = F.layer_norm(x, (x.shape[-1],), ln_w, ln_b, eps)
    return h, lin(h, qkv_w, qkv_b)


def sequential_out(lin, act, x, attn, out_w, out_b, ln_w, ln_b, eps, fc1_w, fc1_b, fc2_w, fc2_b):
    """Pre-LN GPT-2 style: x += out(attn); x += mlp(ln2(x))."""
    x = x + lin(attn, out_w, out_b)
    h = F.layer_norm(x, (x.shape[-1],), ln_w, ln_b, eps)
    return x + lin(act(lin(h, fc1_w, fc1_b)), fc2_w, fc2_b)


def parallel_out(lin, act, x, h, attn, out_w, fc1_w, fc1_b, fc2_w, fc2_b):
    """CodeGen/GPT-J: x + out(attn) + mlp(h), both branches from the same ln_1 output h."""
    return x + lin(attn, out_w, None) + lin(act(lin(h, fc1_w, fc1_b)), fc2_w, fc2_b)


def head(lin, x, ln_w, ln_b, eps, w, b):
    """Final norm and lm_head -> fp32 logits."""
    return lin(F.layer_norm(x, (x.shape[-1],), ln_w, ln_b, eps), w, b).float()


def eager_ops(act) -> SimpleNamespace:
    lin = F.linear
    return SimpleNamespace(
        attn_in=lambda *a: attn_in(lin, *a),
        sequential_out=lambda *a: sequential_out(lin, act, *a),
        parallel_out=lambda *a: parallel_out(lin, act, *a),
        head=lambda *a: head(lin, *a),
    )


class _CompiledOrEager:
    """Calls the compiled function; on the first failure switches (for good) to the eager one."""

    def __init__(self, compiled, eager, name):
        self.compiled, self.eager, self.name = compiled, eager, name

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as e:  # noqa: BLE001 - any compiler problem means "use the eager path"
                log.warning("torch.compile of decode op %s failed (%s); using eager", self.name, e)
                self.compiled = None
        return self.eager(*args)


def compiled_decode_ops(act) -> SimpleNamespace:
    """Ops for one-token steps on CPU (see the module docstring)."""
    eager = eager_ops(act)
    if os.environ.get("INFILL_LS_NO_COMPILE") == "1":
        return eager
    lin = rowwise_linear
    raw = {
        "attn_in": lambda *a: attn_in(lin, *a),
        "sequential_out": lambda *a: sequential_out(lin, act, *a),
        "parallel_out": lambda *a: parallel_out(lin, act, *a),
        "head": lambda *a: head(lin, *a),
    }
    return SimpleNamespace(**{name: _CompiledOrEager(torch.compile(fn, dynamic=False), getattr(eager, name), name)
                              for name, fn in raw.items()})


def wants_compiled_decode(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cpu" and dtype in (torch.float32, torch.bfloat16, torch.float16)
