"""CodeGen 1 and CodeGen2 (Salesforce): parallel attention + MLP sharing one LayerNorm, GPT-J
interleaved partial rotary, fused qkv stored as `mp_num` chunks of (Q, V, K), lm_head with bias.

mp_num is the training sharding baked into the qkv rows: 4 for CodeGen1 and CodeGen2-7B/16B, 8 for
CodeGen2-1B/3_7B, whose configs (alone) carry an explicit "head_dim" field. A config "mp_num" wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..acceleration import Acceleration
from ..errors import ModelError
from ..weights import WeightMap
from .common import DecoderBase, DecoderConfig, Layer, cfg_get, gpt2_fields


def detect_mp_num(cfg: dict) -> int:
    if cfg.get("mp_num") is not None:
        return cfg_get(cfg, "mp_num", kind=int)
    return 8 if cfg.get("head_dim") is not None else 4


@dataclass(frozen=True)
class CodeGenConfig(DecoderConfig):
    rotary_dim: int = 0  # channels of each head that are rotated (at most head_dim)
    mp_num: int = 4  # the qkv rows' training shards (see the module docstring)

    def __post_init__(self):
        super().__post_init__()
        if self.n_heads % self.mp_num:
            raise ModelError(f"config.json: n_head {self.n_heads} is not divisible by mp_num {self.mp_num}")

    @classmethod
    def from_hf(cls, cfg: dict) -> "CodeGenConfig":
        fields = gpt2_fields(cfg, "gelu_new")
        head_dim = max(1, fields["n_embd"] // fields["n_heads"])
        return cls(**fields, rotary_dim=min(cfg_get(cfg, "rotary_dim", default=head_dim, kind=int), head_dim),
                   mp_num=detect_mp_num(cfg))


def qkv_from_mp_layout(w: torch.Tensor, n_embd: int, mp_num: int) -> torch.Tensor:
    """[mp_num x (Q, V, K) chunks] rows -> [Q; K; V] rows with heads in global order."""
    chunks = w.reshape(mp_num, 3, n_embd // mp_num, w.shape[-1])
    q, v, k = (chunks[:, i].reshape(n_embd, -1) for i in range(3))
    return torch.cat([q, k, v]).contiguous()


def rotary_table(positions: int, rotary_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 (cos, sin), each (positions, rotary_dim/2): inv_freq_i = 10000^(-2i/rotary_dim)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rotary_dim, 2, dtype=torch.int64) / rotary_dim))
    angles = torch.arange(positions, dtype=torch.int64).float()[:, None] * inv_freq
    return torch.cos(angles), torch.sin(angles)


class CodeGen(DecoderBase):
    Config = CodeGenConfig

    def __init__(self, cfg: CodeGenConfig, w: WeightMap, acceleration: Acceleration | None = None):
        super().__init__(cfg, acceleration)
        c, v, mp, inner = cfg.n_embd, cfg.vocab_size, cfg.mp_num, cfg.inner
        self.rotary_dim, self.mp_num = cfg.rotary_dim, mp
        self.cos, self.sin = (t.to(w.device) for t in rotary_table(self.max_positions, self.rotary_dim))

        self.wte = w.take("transformer.wte.weight", v, c)
        self.layers = []
        for i in range(self.n_layers):
            p = f"transformer.h.{i}."
            self.layers.append(Layer(
                ln1_w=w.take(p + "ln_1.weight", c), ln1_b=w.take(p + "ln_1.bias", c),
                qkv_w=qkv_from_mp_layout(w.take(p + "attn.qkv_proj.weight", 3 * c, c), c, mp), qkv_b=None,
                out_w=w.take(p + "attn.out_proj.weight", c, c), out_b=None,
                fc1_w=w.take(p + "mlp.fc_in.weight", inner, c), fc1_b=w.take(p + "mlp.fc_in.bias", inner),
                fc2_w=w.take(p + "mlp.fc_out.weight", c, inner), fc2_b=w.take(p + "mlp.fc_out.bias", c)))
        self.lnf_w = w.take("transformer.ln_f.weight", c)
        self.lnf_b = w.take("transformer.ln_f.bias", c)
        self.head = w.take("lm_head.weight", v, c)
        self.head_b = w.take("lm_head.bias", v)

    def forward(self, ids: torch.Tensor, kv) -> torch.Tensor:
        """ids (T,) at positions kv.start.. -> hidden states before ln_f (T, C)."""
        start, t = kv.start, ids.shape[0]
        ops = self.ops_for(t)
        cos, sin = self.cos[start:start + t], self.sin[start:start + t]
        x = F.embedding(ids, self.wte)
        for i, ly in enumerate(self.layers):
            h, q, k, v = ops.rotary_attn_in(x, ly.ln1_w, ly.ln1_b, self.eps, ly.qkv_w, cos, sin,
                                            self.n_heads, self.head_dim, self.rotary_dim)
            attn = kv.attend(i, q, k, v, self.scale)
            x = ops.parallel_out(x, h, attn, ly.out_w, ly.fc1_w, ly.fc1_b, ly.fc2_w, ly.fc2_b)
        return x
