"""Pieces the family files share: config reading, activations, the fused-qkv attention call."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..blocks import eager_ops
from ..errors import ModelError


def cfg_get(cfg: dict, *keys: str, default=...):
    """First present key of `keys` in a config.json dict; ModelError naming the key when required."""
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    if default is ...:
        raise ModelError(f"config.json: missing {keys[0]!r}")
    return default


def _gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "relu": F.relu,
}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise ModelError(f"config.json: unsupported activation_function {name!r} "
                         f"(supported: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]


@dataclass
class Layer:
    """One decoder layer's tensors, HF [out, in] layout; qkv fused as [Q (H*D); K (Hk*D); V (Hk*D)]."""
    ln1_w: torch.Tensor
    ln1_b: torch.Tensor
    qkv_w: torch.Tensor
    qkv_b: torch.Tensor | None
    out_w: torch.Tensor
    out_b: torch.Tensor | None
    fc1_w: torch.Tensor
    fc1_b: torch.Tensor | None
    fc2_w: torch.Tensor
    fc2_b: torch.Tensor | None
    ln2_w: torch.Tensor | None = None
    ln2_b: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)


class DecoderBase:
    """Shapes every family exposes (for the KV cache) and the shared attention/MLP calls."""

    n_layers: int
    n_heads: int
    kv_heads: int
    head_dim: int
    max_positions: int
    vocab_size: int
    eps: float
    act = staticmethod(_gelu_tanh)
    decode_ops = None  # set by the loader: compiled one-token ops (on CPU), or None
    _eager_ops = None

    def ops_for(self, tokens: int):
        """The block functions to run `tokens` rows with (see inference.blocks)."""
        if tokens == 1 and self.decode_ops is not None:
            return self.decode_ops
        if self._eager_ops is None:
            self._eager_ops = eager_ops(self.act)
        return self._eager_ops

    @property
    def scale(self) -> float:
        return 1.0 / math.sqrt(self.head_dim)

    head_b = None  # lm_head bias (CodeGen has one)

    def pre_ln_layers(self, x: torch.Tensor, kv, ops, attn_scale: float) -> torch.Tensor:
        """GPT-2 style pre-LN blocks (GPTBigCode, XGLM): x += attn(ln_1(x)); x += mlp(ln_2(x))."""
        for i, ly in enumerate(self.layers):
            _, qkv = ops.attn_in(x, ly.ln1_w, ly.ln1_b, self.eps, ly.qkv_w, ly.qkv_b)
            attn = kv.attend(i, *self.split_qkv(qkv), attn_scale)
            x = ops.sequential_out(x, attn, ly.out_w, ly.out_b, ly.ln2_w, ly.ln2_b, self.eps,
                                   ly.fc1_w, ly.fc1_b, ly.fc2_w, ly.fc2_b)
        return x

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm and lm_head: (T, C) -> fp32 (T, V)."""
        return self.ops_for(hidden.shape[0]).head(hidden, self.lnf_w, self.lnf_b, self.eps, self.head, self.head_b)

    def split_qkv(self, qkv: torch.Tensor):
        t = qkv.shape[0]
        h, hk, d = self.n_heads, self.kv_heads, self.head_dim
        q, k, v = qkv.split((h * d, hk * d, hk * d), dim=-1)
        return q.view(t, h, d), k.view(t, hk, d), v.view(t, hk, d)
