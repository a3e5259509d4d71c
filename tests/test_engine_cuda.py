"""The engine on CUDA in fp16/bf16 (skipped without a GPU): greedy tokens agree with transformers
running the same dtype for the first tokens, and cache reuse agrees with a fresh run."""

from __future__ import annotations

import pytest
import torch

from inference.engine import Engine, GenerationParams
from inference.loader import load_model
from tests import checkpoints as ck


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("make", [ck.make_gpt_bigcode, ck.make_codegen, ck.make_xglm])
def test_cuda_half_generation(tmp_path, dtype, make):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    folder = make(tmp_path / "m")
    lm = load_model(folder, device="cuda", dtype=dtype)
    ids = lm.encode("def fibonacci(n):\n    if n < 2:")
    ours = lm.full_logits(ids)
    ref = ck.load_reference(folder, dtype=getattr(torch, dtype)).to("cuda")
    with torch.no_grad():
        theirs = ref(torch.tensor([ids], device="cuda")).logits[0].float()
    assert (ours.argmax(-1) == theirs.argmax(-1)).float().mean() > 0.9
    assert (ours - theirs).abs().max() < 0.1 * theirs.abs().max()
    eng = Engine(lm)
    first = eng.generate(ids, GenerationParams(max_new_tokens=16), session="s")
    again = eng.generate(ids + first.token_ids[:4], GenerationParams(max_new_tokens=8), session="s")
    fresh = Engine(lm).generate(ids + first.token_ids[:4], GenerationParams(max_new_tokens=8))
    assert again.reused_tokens > len(ids) - 1 and again.token_ids[:4] == fresh.token_ids[:4]
