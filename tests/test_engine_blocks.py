"""The compiled bf16/fp16 CPU decode ops: the GEMV that gets compiled equals F.linear, the compiled
ops give the eager ops' results, and a compiler failure falls back to eager instead of failing."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from inference import blocks
from inference.engine import Engine, GenerationParams
from inference.loader import load_model
from tests import checkpoints as ck


def test_rowwise_linear_equals_linear():
    torch.manual_seed(0)
    x, w, b = torch.randn(1, 96), torch.randn(40, 96), torch.randn(40)
    for dtype in (torch.bfloat16, torch.float16):
        ours = blocks.rowwise_linear(x.to(dtype), w.to(dtype), b.to(dtype))
        exact = F.linear(x.to(dtype).float(), w.to(dtype).float(), b.to(dtype).float())
        assert ours.dtype == dtype
        assert torch.allclose(ours.float(), exact, atol=0.05, rtol=0.01)
    assert torch.allclose(blocks.rowwise_linear(x, w), F.linear(x, w), atol=1e-4)


def test_compile_failure_falls_back_to_eager(monkeypatch):
    class Broken:
        def __init__(self, fn, **kw):
            pass

        def __call__(self, *a):
            raise RuntimeError("no compiler")

    monkeypatch.setattr(torch, "compile", Broken)
    monkeypatch.delenv("INFILL_LS_NO_COMPILE", raising=False)
    ops = blocks.compiled_decode_ops(F.gelu)
    x, w = torch.randn(1, 8, dtype=torch.bfloat16), torch.randn(4, 8, dtype=torch.bfloat16)
    ln = torch.ones(8, dtype=torch.bfloat16), torch.zeros(8, dtype=torch.bfloat16)
    out = ops.head(x, *ln, 1e-5, w, None)
    assert torch.equal(out, blocks.eager_ops(F.gelu).head(x, *ln, 1e-5, w, None))
    assert ops.head.compiled is None


def test_bf16_cpu_model_gets_decode_ops_and_tracks_fp32(tmp_path, monkeypatch):
    monkeypatch.setenv("INFILL_LS_NO_COMPILE", "1")  # eager: keeps this test quick
    folder = ck.make_codegen(tmp_path / "m", seed=31)
    lm16 = load_model(folder, dtype="bfloat16")
    lm32 = load_model(folder, dtype="float32")
    assert lm16.model.decode_ops is not None and lm32.model.decode_ops is None
    ids = lm32.encode("def fibonacci(n):\n    if n < 2:")
    a, b = lm16.full_logits(ids), lm32.full_logits(ids)
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.8
    assert len(Engine(lm16).generate(ids, GenerationParams(max_new_tokens=8)).token_ids) > 0
