"""8-bit weights for the CPU engine (`dtype: "int8"`): the linear layers' weights (attention in/out,
MLP, output head) quantized at load from any checkpoint, symmetric per output channel (scale =
absmax / 127, zero point 0); embeddings, norms and biases stay bfloat16, and so do the activations
and the KV cache (the model runs like its bfloat16 build except for the matrix products).

The matrix products are 8-bit on both sides: each call quantizes its input rows on the fly (one
scale per row, from the row's absmax) and multiplies int8 by int8 into int32, then scales back to
fp32. Weight-only kernels (int8 weights widened in registers: torch._weight_int8pack_mm, an inductor
row reduction) were measured and were no faster than the compiled bf16 GEMV here; the int8 x int8
products use the CPU's VNNI dot products. Measured per matrix, 2 threads, weights read from memory:
one row 2048x8192 0.64 ms against the compiled bf16 GEMV's 1.09, 768x3072 0.125 against 0.146,
3072x768 0.128 against 0.240, the 768x49152 head 1.5 against 2.3; 512 rows (one thread) 1.6x
faster than bf16 F.linear (no AMX on this CPU). Kernels, picked once per process (`best_kernel`):

- "fbgemm": torch's FBGEMM dynamic-quantized linear (`quantized::linear_dynamic` on a prepacked
  weight), the fastest int8 kernel at every shape measured. Its packed weight is a TorchScript
  object, not a tensor, so the compiled decode ops reach it through a custom op
  (`infill_ls::int8_linear`) that takes a handle tensor: an index into `_PACKED`. FBGEMM quantizes
  a whole input tensor with one scale, so a many-row call (a prefill) divides every row by its own
  absmax first and multiplies it back after, which gives each row its own scale.
- "int_mm": `torch._int_mm` (oneDNN) on a plain int8 weight, the row quantization written out in
  torch ops (inductor fuses it into the neighbouring kernels). Used where FBGEMM is missing (a
  non-x86 build) or its prepacking fails: torch 2.13 deprecates the quantized tensor dtypes that
  FBGEMM's prepack takes (pytorch issue 184982), so a later torch may drop it.

`linear(x, w, b)` is the GEMV every block op calls (inference.blocks): `F.linear` for a tensor
weight, the kernel above for an `Int8Linear`. `quantize_model(model)` replaces a loaded model's
linear weights in place.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import logging
import warnings
import weakref
from typing import Callable

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

KERNELS = ("fbgemm", "int_mm")
LAYER_LINEARS = ("qkv_w", "out_w", "fc1_w", "fc2_w")  # the Layer fields holding [out, in] weights (models.common)

_PACKED: dict[int, torch.ScriptObject] = {}  # handle -> FBGEMM packed weight (removed when its Int8Linear dies)
_HANDLES = itertools.count()
_LIBRARY: list = []  # the torch.library.Library defining infill_ls::int8_linear (it lives as long as this)


class Int8Linear:
    """A linear layer's weight, (out_features, in_features) as in Hugging Face checkpoints, in 8 bits.

    `tensors` are what a compiled graph takes as inputs (inference.blocks flattens an Int8Linear
    into them and rebuilds it with `rebuild` while tracing): for "fbgemm" a 0-d int64 handle into
    `_PACKED`; for "int_mm" the int8 weight (N, K) and its fp32 scales (N,). `signature` is the
    part a compiled graph bakes in (same for every layer of one shape, so they share one graph)."""

    def __init__(self, kernel: str, tensors: tuple[torch.Tensor, ...], out_features: int, in_features: int):
        if kernel not in KERNELS:
            raise ValueError(f"unknown int8 kernel {kernel!r} (use {' or '.join(KERNELS)})")
        self.kernel, self.tensors = kernel, tuple(tensors)
        self.out_features, self.in_features = out_features, in_features

    @property
    def signature(self) -> tuple:
        return ("int8", self.kernel, self.out_features, self.in_features)

    @classmethod
    def rebuild(cls, signature: tuple, tensors) -> "Int8Linear":
        _, kernel, n, k = signature
        return cls(kernel, tuple(tensors), n, k)

    @property
    def shape(self) -> tuple[int, int]:
        return self.out_features, self.in_features

    @property
    def nbytes(self) -> int:
        """Bytes held: the 8-bit weight plus its per-channel metadata (FBGEMM keeps a scale, a zero
        point and a column offset per channel; int_mm a scale)."""
        per_channel = 12 if self.kernel == "fbgemm" else 4
        return self.out_features * (self.in_features + per_channel)

    def __repr__(self) -> str:
        return f"Int8Linear({self.kernel}, {self.out_features}x{self.in_features})"


# ----------------------------------------------------------------------------- FBGEMM

@functools.cache
def reduce_range() -> bool:
    """FBGEMM's 7-bit activations: needed on x86 without VNNI, where its kernels add pairs of
    u8 x s8 products into saturating 16-bit lanes (255 * 127 * 2 overflows them); VNNI accumulates in
    32 bits, so the full 8-bit range is safe there."""
    return not getattr(torch.cpu, "_is_vnni_supported", lambda: False)()


def _linear_dynamic(x: torch.Tensor, packed: "torch.classes.quantized.LinearPackedParamsBase",
                    reduce: bool) -> torch.Tensor:
    return torch.ops.quantized.linear_dynamic(x, packed, reduce)


@functools.cache
def _fbgemm_call() -> Callable:
    """`_linear_dynamic`, through TorchScript when it scripts: a Python call of an op taking a
    TorchScript object converts that object on every call (about 8 us here: C++ exceptions thrown and
    caught while checking its attributes), a scripted call does not (4.4 us against 12-14 us for a
    64x64 matrix; 80 calls a token for tiny_starcoder). torch.jit is deprecated; the plain call is
    the fallback and gives the same numbers."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.script(_linear_dynamic)
    except Exception as e:  # noqa: BLE001 - any scripting problem: call the op from Python
        log.info("scripting the FBGEMM call failed (%s); calling it from Python", e)
        return _linear_dynamic


def _fbgemm_impl(x: torch.Tensor, handle: torch.Tensor, out_features: int) -> torch.Tensor:
    """fp32 x (..., K) -> fp32 (..., N) through the packed weight `handle` names (no bias)."""
    return _fbgemm_call()(x, _PACKED[int(handle)], reduce_range())


def _define_op() -> None:
    """`infill_ls::int8_linear(Tensor x, Tensor handle, int out_features) -> Tensor`: opaque to
    make_fx and inductor (an extern call between the fused kernels), with a shape-only fake."""
    if _LIBRARY or hasattr(torch.ops.infill_ls, "int8_linear"):
        return
    lib = torch.library.Library("infill_ls", "FRAGMENT")
    lib.define("int8_linear(Tensor x, Tensor handle, int out_features) -> Tensor")
    lib.impl("int8_linear", _fbgemm_impl, "CPU")
    torch.library.register_fake("infill_ls::int8_linear",
                                lambda x, handle, n: x.new_empty((*x.shape[:-1], n), dtype=torch.float32), lib=lib)
    _LIBRARY.append(lib)


class _FbgemmEngine:
    """torch.backends.quantized.engine set to "fbgemm" while packing, then restored: the packed
    weight is FBGEMM's whichever engine the process has set (x86's default "x86" engine chooses
    between FBGEMM and oneDNN by itself)."""

    def __enter__(self):
        self.before = torch.backends.quantized.engine
        torch.backends.quantized.engine = "fbgemm"

    def __exit__(self, *exc):
        torch.backends.quantized.engine = self.before


def _pack_fbgemm(q: torch.Tensor, scale: torch.Tensor) -> torch.ScriptObject:
    with warnings.catch_warnings():
        # FBGEMM's prepack takes a qint8 tensor, a dtype torch 2.13 deprecates (see the module docstring)
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        qt = torch._make_per_channel_quantized_tensor(q, scale.double(), torch.zeros_like(scale, dtype=torch.long), 0)
    with _FbgemmEngine():
        return torch.ops.quantized.linear_prepack(qt, None)


@functools.cache
def best_kernel() -> str:
    """"fbgemm" when torch has it and it packs and runs a small weight correctly here, else "int_mm"."""
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        return "int_mm"
    try:
        w = torch.arange(-64, 64, dtype=torch.float32).reshape(8, 16) / 64
        got = int8_linear(torch.ones(1, 16), quantize_linear(w, "fbgemm"), None)
        if torch.allclose(got, w.sum(1)[None], atol=0.1):
            return "fbgemm"
        log.warning("FBGEMM's int8 linear gave wrong results here; using torch._int_mm")
    except Exception as e:  # noqa: BLE001 - any failure: the other kernel
        log.warning("FBGEMM's int8 linear is not usable here (%s); using torch._int_mm", e)
    return "int_mm"


# ----------------------------------------------------------------------------- quantize / apply

def quantize_rows(w: torch.Tensor, rows_at_once: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) float -> int8 (N, K) and fp32 scales (N,): symmetric per row, scale = absmax / 127,
    round to nearest (ties to even); an all-zero row gets a tiny scale and zeros. Done
    `rows_at_once` rows at a time, so the fp32 temporaries stay small (a 49152-row head at once
    took 300 MB of them)."""
    q = torch.empty(w.shape, dtype=torch.int8)
    scale = torch.empty(w.shape[0], dtype=torch.float32)
    for start in range(0, w.shape[0], rows_at_once):
        part = w[start:start + rows_at_once].detach().float()
        s = (part.abs().amax(1) / 127).clamp_min(torch.finfo(torch.float32).tiny)
        q[start:start + rows_at_once] = torch.round(part / s[:, None]).clamp_(-127, 127)
        scale[start:start + rows_at_once] = s
    return q, scale


def quantize_linear(w: torch.Tensor, kernel: str | None = None) -> Int8Linear:
    """A float weight (N out, K in) -> Int8Linear for `kernel` (default: best_kernel())."""
    if w.dim() != 2 or not w.is_floating_point():
        raise ValueError(f"int8 quantization takes a 2-D float weight, got {tuple(w.shape)} {w.dtype}")
    if w.device.type != "cpu":
        raise ValueError(f"int8 weights run on CPU only, got a weight on {w.device}")
    kernel = kernel or best_kernel()
    n, k = w.shape
    q, scale = quantize_rows(w)
    if kernel == "int_mm":
        return Int8Linear(kernel, (q, scale), n, k)
    _define_op()
    key = next(_HANDLES)
    _PACKED[key] = _pack_fbgemm(q, scale)
    out = Int8Linear(kernel, (torch.tensor(key, dtype=torch.int64),), n, k)
    weakref.finalize(out, _PACKED.pop, key, None)
    return out


def int8_linear(x: torch.Tensor, w: Int8Linear, b: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., K) @ w.T (+ b) -> x.dtype; in plain torch ops around one extern kernel, so it traces
    (make_fx) and compiles (inductor fuses the casts and bias into neighbouring kernels)."""
    if w.kernel == "fbgemm" and x.numel() != x.shape[-1]:
        return _fbgemm_rows(x, w, b)
    if w.kernel == "fbgemm":  # one row (a decode step): FBGEMM's own scale is the row's
        y = torch.ops.infill_ls.int8_linear(x.float(), w.tensors[0], w.out_features)
    else:
        q, scale = w.tensors
        xf = x.float()
        xs = xf.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny) / 127
        xq = torch.round(xf / xs).to(torch.int8)
        y = torch._int_mm(xq.reshape(-1, xq.shape[-1]), q.t()).reshape(*x.shape[:-1], -1).float() * (xs * scale)
    if b is not None:
        y = y + b.float()
    return y.to(x.dtype)


def _fbgemm_rows(x: torch.Tensor, w: Int8Linear, b: torch.Tensor | None) -> torch.Tensor:
    """Many rows (a prefill, eager): FBGEMM picks one activation scale for the whole call, so each
    row is divided by its own absmax first and the product multiplied back by it (the product is
    linear in each row): every row uses the whole 8-bit range. In place on the fresh fp32 copies,
    the fastest of the forms measured (x / r with x bf16, aminmax, addcmul: 1.5-4x slower here)."""
    xf = x.float() if x.dtype != torch.float32 else x.clone()
    r = xf.abs().amax(-1, keepdim=True).clamp_min_(torch.finfo(torch.float32).tiny)
    y = torch.ops.infill_ls.int8_linear(xf.div_(r), w.tensors[0], w.out_features).mul_(r)
    if b is not None:
        y.add_(b)
    return y.to(x.dtype)


def linear(x: torch.Tensor, w, b: torch.Tensor | None = None) -> torch.Tensor:
    """The eager GEMV of the block ops: F.linear for a tensor weight, int8_linear for an Int8Linear."""
    if isinstance(w, torch.Tensor):
        return F.linear(x, w, b)
    return int8_linear(x, w, b)


def quantize_model(model, kernel: str | None = None) -> None:
    """Replace a loaded model's linear weights (each layer's qkv, out, fc1, fc2 and the output head)
    by Int8Linear, in place. A head tied to the token embedding gets an 8-bit copy: the embedding
    itself stays in the model's dtype for the row lookups."""
    kernel = kernel or best_kernel()
    for layer in model.layers:
        for name in LAYER_LINEARS:
            setattr(layer, name, quantize_linear(getattr(layer, name), kernel))
    model.head = quantize_linear(model.head, kernel)
    release_freed_memory()


def release_freed_memory() -> None:
    """Give the freed bfloat16 weights' pages back to the OS (glibc's malloc_trim): glibc raises its
    mmap threshold after the first large free, so later weights came from its heap, and without a
    trim the process kept their pages resident (measured: a tiny_starcoder-shaped int8 model stayed
    at bf16's resident size). Nothing happens where there is no glibc."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def linear_weight_bytes(model) -> int:
    """Bytes the linear layers' weights hold (8-bit or not): for the memory comparison."""
    weights = [getattr(layer, name) for layer in model.layers for name in LAYER_LINEARS] + [model.head]
    return sum(w.nbytes if isinstance(w, Int8Linear) else w.numel() * w.element_size() for w in weights)
