"""XGLM (facebook/xglm-*): pre-LN decoder, embeddings scaled by sqrt(d_model) plus a fixed sinusoidal
table read at row position+2, separate q/k/v projections (fused here at load), tied lm_head."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..weights import WeightMap
from .common import DecoderBase, Layer, activation, cfg_get

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


class XGLM(DecoderBase):
    def __init__(self, cfg: dict, w: WeightMap):
        c = self.n_embd = cfg_get(cfg, "d_model", "hidden_size")
        self.n_layers = cfg_get(cfg, "num_layers", "num_hidden_layers")
        self.n_heads = self.kv_heads = cfg_get(cfg, "attention_heads", "num_attention_heads")
        self.head_dim = c // self.n_heads
        self.max_positions = cfg_get(cfg, "max_position_embeddings")
        self.vocab_size = v = cfg_get(cfg, "vocab_size")
        self.eps = 1e-5  # nn.LayerNorm default, as in the reference
        self.act = activation(cfg_get(cfg, "activation_function", default="gelu"))
        self.embed_scale = math.sqrt(c) if cfg_get(cfg, "scale_embedding", default=True) else 1.0
        inner = cfg_get(cfg, "ffn_dim")
        pad = cfg_get(cfg, "pad_token_id", default=1)
        self.positions = sinusoidal_table(self.max_positions + POSITION_OFFSET, c, pad).to(w.device, w.dtype)

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
        if w.has("lm_head.weight") and not cfg_get(cfg, "tie_word_embeddings", default=True):
            self.head = w.take("lm_head.weight", v, c)
        else:
            if w.has("lm_head.weight"):
                w.take("lm_head.weight", v, c)  # a saved copy of the tied head
            self.head = self.wte

    def forward(self, ids: torch.Tensor, kv) -> torch.Tensor:
        start, t = kv.start, ids.shape[0]
        ops = self.ops_for(t)
        x = F.embedding(ids, self.wte) * self.embed_scale
        x = x + self.positions[start + POSITION_OFFSET:start + POSITION_OFFSET + t]
        return self.pre_ln_layers(x, kv, ops, self.scale)
