"""GPTBigCode (StarCoder, SantaCoder, tiny_starcoder): pre-LN GPT-2 blocks, learned positions,
multi-query (one K/V head) or per-head multi-head `c_attn`, lm_head tied to wte."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..weights import WeightMap
from .common import DecoderBase, Layer, activation, cfg_get


class GPTBigCode(DecoderBase):
    def __init__(self, cfg: dict, w: WeightMap):
        c = self.n_embd = cfg_get(cfg, "n_embd", "hidden_size")
        self.n_layers = cfg_get(cfg, "n_layer", "num_hidden_layers")
        self.n_heads = cfg_get(cfg, "n_head", "num_attention_heads")
        self.head_dim = d = c // self.n_heads
        self.kv_heads = hk = 1 if cfg_get(cfg, "multi_query", default=True) else self.n_heads
        self.max_positions = cfg_get(cfg, "n_positions", "max_position_embeddings")
        self.vocab_size = v = cfg_get(cfg, "vocab_size")
        self.eps = cfg_get(cfg, "layer_norm_epsilon", default=1e-5)
        self.act = activation(cfg_get(cfg, "activation_function", default="gelu_pytorch_tanh"))
        self.attn_scale = self.scale if cfg_get(cfg, "scale_attn_weights", default=True) else 1.0
        inner = cfg_get(cfg, "n_inner", default=4 * c)

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
        tied = cfg_get(cfg, "tie_word_embeddings", default=True)
        if w.has("lm_head.weight") and not tied:
            self.head = w.take("lm_head.weight", v, c)
        else:
            if w.has("lm_head.weight"):  # a tied copy saved anyway: must equal wte
                w.take("lm_head.weight", v, c)
            self.head = self.wte

    def forward(self, ids: torch.Tensor, kv) -> torch.Tensor:
        """ids (T,) at positions kv.start.. -> final hidden states (T, C)."""
        start, t = kv.start, ids.shape[0]
        ops = self.ops_for(t)
        x = F.embedding(ids, self.wte) + self.wpe[start:start + t]
        return self.pre_ln_layers(x, kv, ops, self.attn_scale)
