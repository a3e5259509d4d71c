"""Pieces the family files share: reading config.json into a typed config (each family's
`from_hf`), activations, the tied output head, and the decoder base that takes inference.acceleration's
choice at construction."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..acceleration import Acceleration
from ..blocks import eager_ops
from ..errors import ModelError
from ..weights import WeightMap

log = logging.getLogger(__name__)

_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def cfg_get(cfg: dict, *keys: str, default=..., kind: type | None = None):
    """First present key of `keys` in a config.json dict, checked to be of `kind` (int: a positive
    integer); ModelError naming the key when it is missing (and required) or of the wrong kind."""
    for key in keys:
        if cfg.get(key) is None:
            continue
        value = cfg[key]
        ok = kind is None or (isinstance(value, kind) and (kind is bool or not isinstance(value, bool)))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if kind is int and ok and value <= 0:
            ok = False
        if not ok:
            what = "a positive integer" if kind is int else _KINDS[kind]
            raise ModelError(f"config.json: {key!r} must be {what}, found {value!r}")
        return value
    if default is ...:
        alternatives = f" (or {', '.join(map(repr, keys[1:]))})" if len(keys) > 1 else ""
        raise ModelError(f"config.json: missing {keys[0]!r}{alternatives}")
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


@dataclass(frozen=True)
class DecoderConfig:
    """The shapes and choices every family has, read from config.json by the family's `from_hf`
    before any weight is read; checked here, so a bad config fails naming its key."""
    n_embd: int
    n_layers: int
    n_heads: int
    kv_heads: int
    max_positions: int
    vocab_size: int
    inner: int  # MLP width
    eps: float
    activation: str

    def __post_init__(self):
        if self.n_embd % self.n_heads:
            raise ModelError(f"config.json: the hidden size {self.n_embd} is not divisible by the "
                             f"{self.n_heads} attention heads")
        if self.n_heads % self.kv_heads:
            raise ModelError(f"config.json: {self.n_heads} attention heads do not share {self.kv_heads} kv heads evenly")
        activation(self.activation)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_heads


def gpt2_fields(cfg: dict, default_activation: str) -> dict:
    """DecoderConfig's fields under GPT-2's config.json names (n_embd, n_layer, n_head, n_positions,
    n_inner, layer_norm_epsilon, or their newer aliases), one kv head per query head."""
    c = cfg_get(cfg, "n_embd", "hidden_size", kind=int)
    heads = cfg_get(cfg, "n_head", "num_attention_heads", kind=int)
    return dict(n_embd=c, n_layers=cfg_get(cfg, "n_layer", "num_hidden_layers", kind=int), n_heads=heads,
                kv_heads=heads, max_positions=cfg_get(cfg, "n_positions", "max_position_embeddings", kind=int),
                vocab_size=cfg_get(cfg, "vocab_size", kind=int), inner=cfg_get(cfg, "n_inner", default=4 * c, kind=int),
                eps=cfg_get(cfg, "layer_norm_epsilon", default=1e-5, kind=float),
                activation=cfg_get(cfg, "activation_function", default=default_activation, kind=str))


def output_head(w: WeightMap, wte: torch.Tensor, tied: bool) -> torch.Tensor:
    """The lm_head for a family whose head may be tied to the token embedding `wte` (GPTBigCode,
    XGLM): a checkpoint without lm_head.weight ties (the embedding is the head) unless the config says
    `tie_word_embeddings: false`; a saved lm_head.weight is shape-checked and kept when it differs
    from the embedding, and one equal to it is dropped (one tensor in memory, as tied)."""
    shape = tuple(wte.shape)
    if not w.has("lm_head.weight"):
        if not tied:
            raise ModelError(f"checkpoint is missing tensor 'lm_head.weight' (expected shape {list(shape)}; "
                             "config.json sets tie_word_embeddings to false, so the head is not the embedding)")
        return wte
    head = w.take("lm_head.weight", *shape)
    if torch.equal(head, wte):
        return wte
    if tied:
        log.info("lm_head.weight differs from the token embedding: using it as the head (untied)")
    return head


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
    """Shapes every family exposes (for the KV cache), what runs a one-token step (from the
    inference.acceleration choice given at construction) and the shared attention/MLP calls."""

    head_b = None  # lm_head bias (CodeGen has one)

    def __init__(self, config: DecoderConfig, acceleration: Acceleration | None = None):
        self.config = config
        self.n_embd, self.n_layers = config.n_embd, config.n_layers
        self.n_heads, self.kv_heads, self.head_dim = config.n_heads, config.kv_heads, config.head_dim
        self.max_positions, self.vocab_size, self.eps = config.max_positions, config.vocab_size, config.eps
        self.act = activation(config.activation)
        acc = acceleration or Acceleration()
        self.decode_ops = acc.decode_ops(self.act)  # None: one-token steps run the eager ops
        self.decode_attention = acc.decode_attention()  # None: SDPA (read by LanguageModel.kv_spec)
        self._eager_ops = eager_ops(self.act)

    def ops_for(self, tokens: int):
        """The block functions to run `tokens` rows with (see inference.blocks)."""
        if tokens == 1 and self.decode_ops is not None:
            return self.decode_ops
        return self._eager_ops

    @property
    def scale(self) -> float:
        return 1.0 / math.sqrt(self.head_dim)

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
