"""A decode step's attention on CPU for multi-head models (one query row per kv head: CodeGen,
CodeGen2, XGLM), as one compiled kernel whose shapes are symbolic, so the same compiled code serves
every cache length.

SDPA's CPU kernel is slow for one query row per head in bf16 (attention.attend casts to fp32 instead,
a copy of the whole cache per layer and step), and its fp32 path has fixed costs. The kernel here reads
the cache once in its own dtype and accumulates in fp32. Measured per layer, 16 heads x 64, 2 threads:
545 cached positions bf16 0.21 -> 0.09 ms, fp32 0.085 -> 0.061 ms; 2 000 positions bf16 1.05 -> 0.23 ms,
fp32 0.31 -> 0.23 ms. With several query rows per kv head (MQA, GQA) SDPA is faster, so it keeps those.

Traced with make_fx in symbolic mode and compiled by inductor directly (no TorchDynamo guards on each
call, see blocks._CompiledOrEager). If compiling fails, `__call__` answers None for good and the caller
uses SDPA.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def one_row_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """q (Hk, 1, D); k, v (Hk, S, D) -> (Hk, 1, D), in fp32 inside."""
    scores = (k.float() * q.float()).sum(-1) * scale  # (Hk, S)
    p = torch.softmax(scores, -1)
    return (p[:, :, None] * v.float()).sum(1, keepdim=True).to(q.dtype)


class DecodeAttention:
    """Compiled `one_row_attention`, one build per (dtype, heads, head dim, scale)."""

    def __init__(self, deferred: bool = False) -> None:
        """`deferred`: a call never compiles (SDPA until `prepare`, on another thread, has built the
        kernel and `swap`, on the thread that runs the model, has put it in; see blocks._CompiledOrEager)."""
        self.compiled: dict | None = {}  # None once compiling failed
        self.deferred = deferred
        self.pending: dict = {}
        self.failed: Exception | None = None

    @staticmethod
    def _usable(k: torch.Tensor, v: torch.Tensor) -> bool:
        return k.stride() == v.stride() and k.stride(2) == 1 and k.stride(1) == k.shape[2]

    def prepare(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor | None:
        """Build the kernel for these shapes into `pending` and return its result (None: SDPA)."""
        if self.failed is not None or self.compiled is None or not self._usable(k, v):
            return None
        key = (q.dtype, k.shape[0], k.shape[2], scale)
        try:
            fn = self.pending.get(key) or self.compiled.get(key)
            if fn is None:
                fn = self.pending[key] = _compile(q.dtype, k.shape[0], k.shape[2], scale)
            out = fn(q, k, v)
        except Exception as e:  # noqa: BLE001 - any compiler problem means "use SDPA"
            self.failed = e
            return None
        return out[0] if isinstance(out, (list, tuple)) else out

    def swap(self) -> bool:
        """Put the prepared kernels in (between jobs, on the model's thread); False: SDPA for good."""
        self.deferred = False
        if self.failed is not None or self.compiled is None:
            if self.failed is not None:
                log.warning("compiling the decode attention failed (%s); using SDPA", self.failed)
            self.compiled = None
            return False
        self.compiled.update(self.pending)
        self.pending = {}
        return True

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor | None:
        """q (Hk, 1, D) contiguous; k, v (Hk, S, D) views with the last two dims dense and the same
        strides (the cache's layout). None: not available here, use SDPA."""
        if self.compiled is None or not self._usable(k, v):
            return None
        key = (q.dtype, k.shape[0], k.shape[2], scale)
        try:
            fn = self.compiled.get(key)
            if fn is None:
                if self.deferred:
                    return None
                fn = self.compiled[key] = _compile(q.dtype, k.shape[0], k.shape[2], scale)
            out = fn(q, k, v)
        except Exception as e:  # noqa: BLE001 - any compiler problem means "use SDPA"
            log.warning("compiling the decode attention failed (%s); using SDPA", e)
            self.compiled = None
            return None
        return out[0] if isinstance(out, (list, tuple)) else out


def _compile(dtype: torch.dtype, heads: int, head_dim: int, scale: float):
    from torch._inductor.compile_fx import compile_fx
    from torch.fx.experimental.proxy_tensor import make_fx

    # Examples: the cache length is symbolic and the kv views' first stride is a symbol of its own
    # (a view of a larger buffer, as the cache is). k and v must be distinct tensors: the same one
    # twice would be traced as one input. The example length must differ from heads and head_dim: equal
    # sizes get one symbol (duck sizing), and 8 heads or a head dim of 8 made every other length fail.
    q = torch.zeros(heads, 1, head_dim, dtype=dtype)
    s = next(n for n in range(7, 100) if n not in (heads, head_dim))
    k, v = (torch.zeros(heads, 2 * s, head_dim, dtype=dtype)[:, :s] for _ in range(2))
    graph = make_fx(lambda q, k, v: one_row_attention(q, k, v, scale), tracing_mode="symbolic")(q, k, v)
    fakes = [n.meta["val"] for n in graph.graph.nodes if n.op == "placeholder"]
    with fakes[0].fake_mode:
        return compile_fx(graph, fakes)
