"""Decoder block pieces as free functions of tensors, shared by the families, in two builds:

- eager (`F.linear`): prefill, and every step on CUDA;
- compiled decode ops on CPU (fp32, bf16, fp16): decoding one token is a chain of matrix-vector
  products whose speed is the speed of reading the weights. Stock CPU GEMV runs far below memory
  bandwidth (measured on one core: fp32 `F.linear` 6-8 GB/s, bf16 slower still, while a plain sum
  reads 27 GB/s), whereas a compiled row reduction (read the row, widen to fp32 in registers,
  accumulate) reads 24-30 GB/s on two cores, in fp32 and bf16 alike. Each piece (norm + GEMV; GEMVs +
  activation + residuals; CodeGen's norm + qkv + rotary) is one compiled call, so a layer costs two
  calls around the eager attention. The calls go straight to inductor's compiled code (no TorchDynamo
  guards: see _CompiledOrEager). Every GEMV input is made an output of its graph, so inductor stores
  it once: left inline, a layer norm feeding a GEMV was recomputed for each of the weight's rows,
  which made bf16 decode compute-bound (tiny_starcoder shape: 18.5 -> 12.9 ms/token).
  If compiling fails (no C++ compiler...), the eager build is used. Whether they run at all
(INFILL_LS_NO_COMPILE=1, the device, the dtype) is decided in inference.acceleration.

A weight is a tensor or an 8-bit `inference.quantize.Int8Linear` (`dtype: "int8"`): the ops call
`quantize.linear` eagerly, and a compiled op takes an Int8Linear's tensors as graph inputs and calls
its int8 kernel (an extern call inside the graph) instead of the row reduction.

Attention stays outside: it touches the KV cache.
"""

from __future__ import annotations

import logging
from functools import partial
from types import SimpleNamespace

import torch
import torch.nn.functional as F
import torch.utils._pytree as pytree

from .quantize import Int8Linear, int8_linear, linear

log = logging.getLogger(__name__)


def rowwise_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """x (1, K) @ w (N, K).T (+ b), accumulated in fp32: the decode GEMV that gets compiled."""
    y = (x[:, None, :].float() * w.float()).sum(-1)
    if b is not None:
        y = y + b.float()
    return y.to(x.dtype)


EAGER_LAYOUT_MAX_BYTES = 256 * 2**20  # load_model re-lays out eager fp32 models up to this size (a copy each)


def column_major_linears(model) -> bool:
    """For eager fp32 decode on CPU: each linear weight (the layers' qkv, out, fc1, fc2 and the head),
    logically (N out, K in) as in the checkpoint, becomes the transposed view of a (K, N) contiguous
    copy. F.linear then multiplies x (1, K) by a contiguous (K, N) matrix, a product MKL streams about
    twice as fast as the row-major one for a single row (8192 x 256: 0.31 ms against 0.62; the shipped
    model's eager decode 1.11 -> 0.86 ms a token), and prefills run at the same speed. The compiled
    decode's row reductions want row-major weights (0.62 -> 0.89 ms a token with this layout), so only
    models that decode eagerly get it. A head tied to the token embedding is re-laid out once and the
    embedding's row lookups read it strided. Returns False (nothing changed) unless the weights are fp32
    tensors on CPU."""
    from .quantize import LAYER_LINEARS

    weights = [getattr(layer, name) for layer in model.layers for name in LAYER_LINEARS] + [model.head]
    if not all(isinstance(w, torch.Tensor) and w.dtype == torch.float32 and w.device.type == "cpu" for w in weights):
        return False
    relaid = {}
    for w in weights:
        if id(w) not in relaid and w.dim() == 2 and w.stride() == (w.shape[1], 1):
            relaid[id(w)] = w.t().contiguous().t()
    for layer in model.layers:
        for name in LAYER_LINEARS:
            w = getattr(layer, name)
            setattr(layer, name, relaid.get(id(w), w))
    for name in ("head", "wte"):
        w = getattr(model, name, None)
        if isinstance(w, torch.Tensor) and id(w) in relaid:
            setattr(model, name, relaid[id(w)])
    return True


def attn_in(lin, x, ln_w, ln_b, eps, qkv_w, qkv_b):
    """-> (normed x, fused qkv)."""
    h = F.layer_norm(x, (x.shape[-1],), ln_w, ln_b, eps)
    return h, lin(h, qkv_w, qkv_b)


def rotate_interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rotary_dim: int) -> torch.Tensor:
    """GPT-J "rotate every two" on the first rotary_dim channels, in fp32. x (T, H, D); cos/sin (T, rd/2)."""
    rot = x[..., :rotary_dim].float()
    x1, x2 = rot[..., 0::2], rot[..., 1::2]  # channel pairs (2i, 2i+1) share frequency i
    c, s = cos[:, None, :], sin[:, None, :]
    rotated = torch.stack((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).flatten(-2)
    return torch.cat((rotated.to(x.dtype), x[..., rotary_dim:]), dim=-1)


def rotary_attn_in(lin, x, ln_w, ln_b, eps, qkv_w, cos, sin, heads, head_dim, rotary_dim):
    """CodeGen: norm, qkv [Q; K; V] (one kv head per query head), q and k rotated -> (h, q, k, v),
    q/k/v (T, heads, head_dim). In the decode build the rotation is part of the compiled call: run
    eagerly it is ~20 small ops a layer (2.4 ms a token for codegen-350M)."""
    h, qkv = attn_in(lin, x, ln_w, ln_b, eps, qkv_w, None)
    q, k, v = (part.reshape(x.shape[0], heads, head_dim) for part in qkv.chunk(3, dim=-1))
    return h, rotate_interleaved(q, cos, sin, rotary_dim), rotate_interleaved(k, cos, sin, rotary_dim), v


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


def ops_taking_lin(act) -> dict:
    """The block ops by name, each written against a GEMV: fn(lin, *args) with lin(x, w, b)."""
    return {
        "attn_in": attn_in,
        "rotary_attn_in": rotary_attn_in,
        "sequential_out": lambda lin, *a: sequential_out(lin, act, *a),
        "parallel_out": lambda lin, *a: parallel_out(lin, act, *a),
        "head": head,
    }


def eager_ops(act) -> SimpleNamespace:
    """The ops with the eager GEMV (F.linear, or the int8 kernel for an Int8Linear weight)."""
    return SimpleNamespace(**{name: partial(fn, linear) for name, fn in ops_taking_lin(act).items()})


def _flatten(args) -> tuple[list[torch.Tensor], tuple]:
    """An op's arguments -> (the tensors a compiled graph takes, in order; the key of its build):
    an Int8Linear contributes its tensors, and its signature to the key; other non-tensors (eps, a
    missing bias) are part of the key and baked into the graph."""
    tensors, key = [], []
    for a in args:
        if isinstance(a, torch.Tensor):
            tensors.append(a)
            key.append((a.shape, a.dtype))
        elif isinstance(a, Int8Linear):
            tensors.extend(a.tensors)
            key.append((a.signature, tuple((t.shape, t.dtype) for t in a.tensors)))
        else:
            key.append(a)
    return tensors, tuple(key)


def _rebuild(args, tensors) -> list:
    """`args` with their tensors (and Int8Linears' tensors) replaced by `tensors`, in _flatten's order."""
    it = iter(tensors)
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            out.append(next(it))
        elif isinstance(a, Int8Linear):
            out.append(Int8Linear.rebuild(a.signature, [next(it) for _ in a.tensors]))
        else:
            out.append(a)
    return out


class _CompiledOrEager:
    """Calls `fn` compiled for the argument shapes of its first call; on the first failure switches
    (for good) to the eager build.

    The graph is traced with make_fx and compiled by `torch._inductor.compile`, without TorchDynamo:
    a decode step makes two of these calls per layer, and dynamo's guard check and wrappers cost about
    40 us a call (a fifth of the default model's step) for functions whose shapes never change.
    Non-tensor arguments (eps, a missing bias) are baked into the graph; a call whose shapes or
    constants differ from the compiled one gets a graph of its own.
    """

    def __init__(self, fn, eager, name, deferred: bool = False):
        """fn(lin, *args): the op written against a GEMV `lin(x, w, b)`; eager(*args): its eager build.
        `deferred`: a call never compiles; it runs eager until `prepare` (another thread) has built the
        graph and `swap` (the thread that runs the model, between jobs) has put it in."""
        self.fn, self.eager, self.name = fn, eager, name
        self.compiled: dict | None = {}  # signature -> compiled callable; None once compiling failed
        self.deferred = deferred
        self.pending: dict = {}  # built by prepare, not yet swapped in
        self.failed: Exception | None = None  # prepare's compile failure, made final by swap

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self._run(args)
            except Exception as e:  # noqa: BLE001 - any compiler problem means "use the eager path"
                log.warning("compiling decode op %s failed (%s); using eager", self.name, e)
                self.compiled = None
        return self.eager(*args)

    def _run(self, args):
        tensors, key = _flatten(args)
        fn = self.compiled.get(key)
        if fn is None:
            if self.deferred:
                return self.eager(*args)
            fn = self.compiled[key] = self._compile(args, tensors)
        return fn(*tensors)

    def prepare(self, *args):
        """Compile for these arguments into `pending` (not yet used by calls) and return the compiled
        result; on a compiler failure remember it (swap makes it final) and return the eager result."""
        if self.failed is None and self.compiled is not None:
            tensors, key = _flatten(args)
            try:
                fn = self.pending.get(key) or self.compiled.get(key)
                if fn is None:
                    fn = self.pending[key] = self._compile(args, tensors)
                return fn(*tensors)
            except Exception as e:  # noqa: BLE001 - any compiler problem means "use the eager path"
                self.failed = e
        return self.eager(*args)

    def swap(self) -> bool:
        """Put the prepared graphs in (call on the thread that runs the model, between its jobs); from
        then on a call with a new signature compiles at that call, as without deferral. False: compiling
        failed and the op stays eager for good."""
        self.deferred = False
        if self.failed is not None or self.compiled is None:
            if self.failed is not None:
                log.warning("compiling decode op %s failed (%s); using eager", self.name, self.failed)
            self.compiled = None
            return False
        self.compiled.update(self.pending)
        self.pending = {}
        return True

    def _compile(self, args, tensors):
        import torch._inductor
        from torch.fx.experimental.proxy_tensor import make_fx

        gemv_inputs = []

        def lin(x, w, b=None):
            if isinstance(w, Int8Linear):  # an extern kernel: its input is stored anyway
                return int8_linear(x, w, b)
            gemv_inputs.append(x)
            return rowwise_linear(x, w, b)

        tree = None  # the structure of fn's own outputs, set while tracing

        def with_constants(*ts):
            nonlocal tree
            full = _rebuild(args, ts)
            gemv_inputs.clear()
            outs, tree = pytree.tree_flatten(self.fn(lin, *full))
            return (*outs, *gemv_inputs)  # the extra outputs get stored, not recomputed for each row

        compiled = torch._inductor.compile(make_fx(with_constants)(*tensors), tensors)
        return lambda *ts: pytree.tree_unflatten(list(compiled(*ts)[:tree.num_leaves]), tree)


def compiled_decode_ops(act, deferred: bool = False) -> SimpleNamespace:
    """Ops for one-token steps on CPU (see the module docstring); each compiles at its first call, or
    with `deferred` runs eager until built in the background (`preparing`) and swapped in."""
    eager = eager_ops(act)
    return SimpleNamespace(**{name: _CompiledOrEager(fn, getattr(eager, name), name, deferred)
                              for name, fn in ops_taking_lin(act).items()})


def preparing(ops: SimpleNamespace) -> SimpleNamespace:
    """The same ops, each call compiling into `pending` (a background build's forward pass)."""
    return SimpleNamespace(**{name: op.prepare for name, op in vars(ops).items()})


