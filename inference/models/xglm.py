"""XGLM (facebook/xglm-*): pre-LN decoder, embeddings scaled by sqrt(d_model) plus a fixed sinusoidal
table read at row position+2, separate q/k/v projections (fused here at load), tied lm_head."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..acceleration import Acceleration
from ..errors import ModelError
from ..weights import WeightMap
from .common import DecoderBase, DecoderConfig, Layer, cfg_get, output_head

POSITION_OFFSET = 2  # fairseq: rows 0 and 1 (padding_idx) come before position 0


def sinusoidal_table(rows: int, dim: int, padding_idx: int | None) -> torch.Tensor:
    """fp32 (rows, dim): all sines then all cosines, freq_j = exp(-j*ln(10000)/(dim/2 - 1))."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.int64).float() * -(math.log(10000) / (half - 1)))
    angles = torch.arange(rows, dtype=torch.int64).float()[:, None] * freq[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        table = torch.cat([table, torch.zeros(rows, 1)], dim=1)
    if padding_idx is not None:
        table[padding_idx] = 0
    return table


@dataclass(frozen=True)
class XGLMConfig(DecoderConfig):
    scale_embedding: bool = True  # embeddings times sqrt(d_model)
    pad_token_id: int | None = 1  # the zeroed row of the position table
    tie_word_embeddings: bool = True

    @classmethod
    def from_hf(cls, cfg: dict) -> "XGLMConfig":
        heads = cfg_get(cfg, "attention_heads", "num_attention_heads", kind=int)
        pad = cfg_get(cfg, "pad_token_id", default=1)
        if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
            raise ModelError(f"config.json: 'pad_token_id' must be a token id, found {pad!r}")
        return cls(n_embd=cfg_get(cfg, "d_model", "hidden_size", kind=int),
                   n_layers=cfg_get(cfg, "num_layers", "num_hidden_layers", kind=int), n_heads=heads, kv_heads=heads,
                   max_positions=cfg_get(cfg, "max_position_embeddings", kind=int),
                   vocab_size=cfg_get(cfg, "vocab_size", kind=int), inner=cfg_get(cfg, "ffn_dim", kind=int),
                   eps=1e-5,  # nn.LayerNorm default, as in the reference
                   activation=cfg_get(cfg, "activation_function", default="gelu", kind=str),
                   scale_embedding=cfg_get(cfg, "scale_embedding", default=True, kind=bool), pad_token_id=pad,
                   tie_word_embeddings=cfg_get(cfg, "tie_word_embeddings", default=True, kind=bool))


class XGLM(DecoderBase):
    Config = XGLMConfig

    def __init__(self, cfg: XGLMConfig, w: WeightMap, acceleration: Acceleration | None = None):
        super().__init__(cfg, acceleration)
        c, v, inner = cfg.n_embd, cfg.vocab_size, cfg.inner
        self.embed_scale = math.sqrt(c) if cfg.scale_embedding else 1.0
        self.positions = sinusoidal_table(self.max_positions + POSITION_OFFSET, c, cfg.pad_token_id).to(w.device, w.dtype)

        self.wte = w.take("model.embed_tokens.weight", v, c)
        self.layers = []
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            a = p + "self_attn."
            self.layers.append(Layer(
                ln1_w=w.take(p + "self_attn_layer_norm.weight", c), ln1_b=w.take(p + "self_attn_layer_norm.bias", c),
                qkv_w=torch.cat([w.take(a + f"{n}_proj.weight", c, c) for n in "qkv"]),
                qkv_b=torch.cat([w.take(a + f"{n}_proj.bias", c) for n in "qkv"]),
                out_w=w.take(a + "out_proj.weight", c, c), out_b=w.take(a + "out_proj.bias", c),
                ln2_w=w.take(p + "final_layer_norm.weight", c), ln2_b=w.take(p + "final_layer_norm.bias", c),
                fc1_w=w.take(p + "fc1.weight", inner, c), fc1_b=w.take(p + "fc1.bias", inner),
                fc2_w=w.take(p + "fc2.weight", c, inner), fc2_b=w.take(p + "fc2.bias", c)))
        self.lnf_w = w.take("model.layer_norm.weight", c)
        self.lnf_b = w.take("model.layer_norm.bias", c)
        self.head = output_head(w, self.wte, cfg.tie_word_embeddings)

    def forward(self, ids: torch.Tensor, kv) -> torch.Tensor:
        start, t = kv.start, ids.shape[0]
        ops = self.ops_for(t)
        x = F.embedding(ids, self.wte) * self.embed_scale
        x = x + self.positions[start + POSITION_OFFSET:start + POSITION_OFFSET + t]
        return self.pre_ln_layers(x, kv, ops, self.scale)
