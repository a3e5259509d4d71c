"""The bf16/fp16 CPU decode GEMV: the function that gets compiled equals F.linear, and a compiler
failure falls back to F.linear instead of breaking generation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from inference import gemv
from inference.engine import Engine, GenerationParams
from inference.loader import load_model
from tests import checkpoints as ck


def test_rowwise_equals_linear_in_fp32_accumulation():
    torch.manual_seed(0)
    x, w, b = torch.randn(1, 96), torch.randn(40, 96), torch.randn(40)
    for dtype in (torch.bfloat16, torch.float16):
        ours = gemv._rowwise(x.to(dtype), w.to(dtype), b.to(dtype))
        exact = F.linear(x.to(dtype).float(), w.to(dtype).float(), b.to(dtype).float())
        assert ours.dtype == dtype
        assert torch.allclose(ours.float(), exact, atol=0.05, rtol=0.01)
    assert torch.allclose(gemv._rowwise(x, w, None), F.linear(x, w), atol=1e-4)


def test_compile_failure_falls_back_to_linear(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(torch, "compile", broken)
    g = gemv.HalfGemv()
    x, w = torch.randn(1, 8, dtype=torch.bfloat16), torch.randn(4, 8, dtype=torch.bfloat16)
    assert torch.equal(g(x, w), F.linear(x, w)) and g.failed


def test_bf16_cpu_model_gets_the_gemv_and_tracks_fp32(tmp_path, monkeypatch):
    monkeypatch.setenv("INFILL_LS_NO_COMPILE", "1")  # the eager fallback: keeps this test quick
    folder = ck.make_gpt_bigcode(tmp_path / "m", seed=31)
    lm16 = load_model(folder, dtype="bfloat16")
    assert isinstance(lm16.model.gemv, gemv.HalfGemv)
    assert load_model(folder, dtype="float32").model.gemv is None
    lm32 = load_model(folder, dtype="float32")
    ids = lm32.encode("def fibonacci(n):\n    if n < 2:")
    a, b = lm16.full_logits(ids), lm32.full_logits(ids)
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.8
    res = Engine(lm16).generate(ids, GenerationParams(max_new_tokens=8))
    assert len(res.token_ids) > 0
