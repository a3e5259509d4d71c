"""The engine on CUDA in fp16/bf16 (skipped without a GPU), with flash-attn where it imports and with
SDPA: every generated greedy token is the one transformers in fp32 picks after the same tokens (or a
near tie of it), the logits of the prompt and of every decode step stay close to fp32, and cache reuse
gives a fresh run's tokens."""

from __future__ import annotations

import pytest
import torch

from inference import attention
from inference.engine import Engine, GenerationParams
from inference.loader import load_model
from tests import checkpoints as ck

# Bounds taken from the CPU bf16 measurements of the same tiny models (tests/test_engine_models.py:
# logit error up to 6.5% of the largest |logit|, argmax agreement >= 0.96); not yet measured on a GPU.
LOGIT_TOLERANCE = 0.08  # of the position's largest fp32 |logit|
AGREEMENT = 0.9  # generated tokens that are exactly fp32's argmax
NEW_TOKENS = 48


def cuda_or_skip():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["default", "sdpa"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("kind", ["gpt_bigcode_mqa", "gpt_bigcode_mha", "codegen", "xglm"])
def test_cuda_half_generation_follows_fp32_transformers(family_models, kind, dtype, backend, monkeypatch):
    cuda_or_skip()
    if backend == "sdpa":
        monkeypatch.setattr(attention, "_flash_with_kvcache", None)
    elif not attention.flash_available("cuda", getattr(torch, dtype)):
        pytest.skip("flash-attn is not importable here: 'default' is the SDPA run")
    folder = family_models.folders(kind)[0]
    lm = load_model(folder, device="cuda", dtype=dtype)
    assert lm.kv_spec().flash == (backend == "default")
    ref = ck.load_reference(family_models.folders(kind)[1]).to("cuda")  # fp32
    prompt = lm.encode(ck.CODE_TEXT)[:200]
    res = Engine(lm).generate(prompt, GenerationParams(max_new_tokens=NEW_TOKENS))
    assert res.token_ids and res.stop_reason in ("eos", "max_tokens")
    assert res.stop_reason == "eos" or len(res.token_ids) == NEW_TOKENS
    with torch.no_grad():
        theirs = ref(torch.tensor([prompt + res.token_ids], device="cuda")).logits[0, len(prompt) - 1:].float()
    picked = torch.tensor(res.token_ids + ([lm.eos_token_ids[0]] if res.stop_reason == "eos" else []),
                          device="cuda")
    theirs = theirs[:len(picked)]
    scale = theirs.abs().amax(-1)
    # every pick is fp32's best or within the tolerance of it
    shortfall = theirs.amax(-1) - theirs.gather(1, picked[:, None])[:, 0]
    assert bool((shortfall <= LOGIT_TOLERANCE * scale).all()), (shortfall / scale).max()
    assert (theirs.argmax(-1) == picked).float().mean().item() >= AGREEMENT
    # the logits of the prompt (prefill) and of every decode step, teacher-forced on the same tokens
    ours = lm.full_logits(prompt + res.token_ids)
    with torch.no_grad():
        full = ref(torch.tensor([prompt + res.token_ids], device="cuda")).logits[0].float()
    err = ((ours - full).abs() / full.abs().amax(-1, keepdim=True)).max().item()
    assert err <= LOGIT_TOLERANCE, err
    # cache reuse: the document's cache gives a fresh engine's tokens
    eng = Engine(lm)
    eng.generate(prompt, GenerationParams(max_new_tokens=16), session="s")
    longer = prompt + res.token_ids[:4]
    again = eng.generate(longer, GenerationParams(max_new_tokens=8), session="s")
    fresh = Engine(lm).generate(longer, GenerationParams(max_new_tokens=8))
    assert again.reused_tokens >= len(prompt) - 1 and again.token_ids == fresh.token_ids
