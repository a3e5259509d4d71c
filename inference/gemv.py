"""Matrix-vector products for decoding in bf16/fp16 on CPU.

Decoding one token multiplies a single row by every weight matrix, so its speed is the speed of
reading the weights. Stock CPU GEMV in bf16 runs well below memory bandwidth (slower than fp32 on
the machines measured), while a torch.compile'd reduction — read the bf16 row, widen to fp32 in
registers, accumulate — reaches it. Compiled once per process (dynamic shapes: one kernel for all
matrices); if compiling fails (no C++ compiler, unsupported platform) we fall back to F.linear.
Set INFILL_LS_NO_COMPILE=1 to skip it.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


def _rowwise(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x (1, K), w (N, K) -> (1, N), accumulating in fp32."""
    y = (x[:, None, :].float() * w.float()).sum(-1)
    if b is not None:
        y = y + b.float()
    return y.to(x.dtype)


class HalfGemv:
    """Callable (x, w, b) for one-row inputs; compiles on first use, F.linear if that fails."""

    def __init__(self):
        self.fn = None
        self.failed = os.environ.get("INFILL_LS_NO_COMPILE") == "1"

    def __call__(self, x, w, b=None):
        if self.failed:
            return F.linear(x, w, b)
        if self.fn is None:
            try:
                fn = torch.compile(_rowwise, dynamic=True)
                fn(x, w, b)  # compile now so failures surface here
                self.fn = fn
            except Exception as e:  # noqa: BLE001 - any compiler problem means "use the eager path"
                log.warning("torch.compile of the decode GEMV failed (%s); using F.linear", e)
                self.failed = True
                return F.linear(x, w, b)
        return self.fn(x, w, b)


def wants_half_gemv(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cpu" and dtype in (torch.bfloat16, torch.float16)
