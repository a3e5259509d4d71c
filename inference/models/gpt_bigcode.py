"""GPTBigCode (StarCoder, SantaCoder, tiny_starcoder): pre-LN GPT-2 blocks, learned positions,
multi-query (one K/V head) or per-head multi-head `c_attn`, lm_head tied to wte."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..acceleration import Acceleration
from ..weights import WeightMap
from .common import DecoderBase, DecoderConfig, Layer, cfg_get, gpt2_fields, output_head


@dataclass(frozen=True)
class GPTBigCodeConfig(DecoderConfig):
    scale_attn_weights: bool = True  # scores scaled by 1/sqrt(head_dim)
    tie_word_embeddings: bool = True

    @classmethod
    def from_hf(cls, cfg: dict) -> "GPTBigCodeConfig":
        fields = gpt2_fields(cfg, "gelu_pytorch_tanh")
        if cfg_get(cfg, "multi_query", default=True, kind=bool):
            fields["kv_heads"] = 1
        return cls(**fields, scale_attn_weights=cfg_get(cfg, "scale_attn_weights", default=True, kind=bool),
                   tie_word_embeddings=cfg_get(cfg, "tie_word_embeddings", default=True, kind=bool))


class GPTBigCode(DecoderBase):
    Config = GPTBigCodeConfig

    def __init__(self, cfg: GPTBigCodeConfig, w: WeightMap, acceleration: Acceleration | None = None):
        super().__init__(cfg, acceleration)
        c, d, hk, v, inner = cfg.n_embd, cfg.head_dim, cfg.kv_heads, cfg.vocab_size, cfg.inner
        self.attn_scale = self.scale if cfg.scale_attn_weights else 1.0

        self.wte = w.take("transformer.wte.weight", v, c)
        self.wpe = w.take("transformer.wpe.weight", self.max_positions, c)
        self.layers = []
        for i in range(self.n_layers):
            p = f"transformer.h.{i}."
            qkv_w = w.take(p + "attn.c_attn.weight", c + 2 * hk * d, c)
            qkv_b = w.take(p + "attn.c_attn.bias", c + 2 * hk * d)
            if hk > 1:  # per-head [q_h | k_h | v_h] -> [Q; K; V]
                qkv_w = qkv_w.view(self.n_heads, 3, d, c).transpose(0, 1).reshape(3 * c, c).contiguous()
                qkv_b = qkv_b.view(self.n_heads, 3, d).transpose(0, 1).reshape(3 * c).contiguous()
            self.layers.append(Layer(
                ln1_w=w.take(p + "ln_1.weight", c), ln1_b=w.take(p + "ln_1.bias", c),
                qkv_w=qkv_w, qkv_b=qkv_b,
                out_w=w.take(p + "attn.c_proj.weight", c, c), out_b=w.take(p + "attn.c_proj.bias", c),
                ln2_w=w.take(p + "ln_2.weight", c), ln2_b=w.take(p + "ln_2.bias", c),
                fc1_w=w.take(p + "mlp.c_fc.weight", inner, c), fc1_b=w.take(p + "mlp.c_fc.bias", inner),
                fc2_w=w.take(p + "mlp.c_proj.weight", c, inner), fc2_b=w.take(p + "mlp.c_proj.bias", c)))
        self.lnf_w = w.take("transformer.ln_f.weight", c)
        self.lnf_b = w.take("transformer.ln_f.bias", c)
        self.head = output_head(w, self.wte, cfg.tie_word_embeddings)

    def forward(self, ids: torch.Tensor, kv) -> torch.Tensor:
        """ids (T,) at positions kv.start.. -> final hidden states (T, C)."""
        start, t = kv.start, ids.shape[0]
        ops = self.ops_for(t)
        x = F.embedding(ids, self.wte) + self.wpe[start:start + t]
        return self.pre_ln_layers(x, kv, ops, self.attn_scale)
