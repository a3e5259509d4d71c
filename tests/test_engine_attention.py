"""The attention function: SDPA path against a plain softmax reference, the compiled decode-step
kernel against the same reference, and flash-attn against SDPA on CUDA (skipped where there is no GPU
or no flash-attn)."""

from __future__ import annotations

import math

import pytest
import torch

from inference import attention
from inference.attention import FOLD_MAX_TOKENS, attend, kv_buffer_shape
from inference.decode_attention import DecodeAttention


def reference(q, keys, values, start, scale):
    """q (T,H,D), keys/values (S,Hk,D) holding all positions up to start+T."""
    t, h, d = q.shape
    g = h // keys.shape[1]
    k = keys.repeat_interleave(g, dim=1).transpose(0, 1)  # (H,S,D)
    v = values.repeat_interleave(g, dim=1).transpose(0, 1)
    scores = q.transpose(0, 1) @ k.transpose(1, 2) * scale  # (H,T,S)
    allowed = torch.arange(k.shape[1])[None, :] <= torch.arange(start, start + t)[:, None]
    scores = scores.masked_fill(~allowed, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(0, 1).reshape(t, h * d)


def run(q, k_all, v_all, start, flash, device="cpu", dtype=torch.float32, decode=None, capacity=64):
    """Fill the cache with positions < start, then attend the last T positions."""
    t, _, d = q.shape
    hk = k_all.shape[1]
    shape = kv_buffer_shape(flash, hk, capacity, d)
    kc = torch.zeros(shape, device=device, dtype=dtype)
    vc = torch.zeros(shape, device=device, dtype=dtype)
    if start:
        attend(q[:1].new_zeros(start, q.shape[1], d), k_all[:start], v_all[:start], kc, vc, 0, 1.0, flash)
    return attend(q, k_all[start:], v_all[start:], kc, vc, start, 1 / math.sqrt(d), flash, decode)


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 1), (6, 2)])
@pytest.mark.parametrize("start,t", [(0, 7), (5, 1), (9, 4), (9, FOLD_MAX_TOKENS), (9, FOLD_MAX_TOKENS + 3)])
def test_sdpa_path_matches_reference(heads, kv_heads, start, t):
    torch.manual_seed(0)
    d = 16
    q = torch.randn(t, heads, d)
    k_all, v_all = torch.randn(start + t, kv_heads, d), torch.randn(start + t, kv_heads, d)
    ours = run(q, k_all, v_all, start, flash=False)
    assert torch.allclose(ours, reference(q, k_all, v_all, start, 1 / math.sqrt(d)), atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("heads,kv_heads", [(8, 8), (8, 1)])
def test_flash_attn_matches_sdpa_on_cuda(dtype, heads, kv_heads):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    if not attention.flash_available("cuda", dtype):
        pytest.skip("flash-attn is not importable here")
    torch.manual_seed(0)
    d = 64
    for start, t in [(0, 9), (12, 1), (20, 5)]:
        q = torch.randn(t, heads, d, device="cuda", dtype=dtype)
        k_all = torch.randn(start + t, kv_heads, d, device="cuda", dtype=dtype)
        v_all = torch.randn(start + t, kv_heads, d, device="cuda", dtype=dtype)
        fa = run(q, k_all, v_all, start, flash=True, device="cuda", dtype=dtype)
        sd = run(q, k_all, v_all, start, flash=False, device="cuda", dtype=dtype)
        assert torch.allclose(fa.float(), sd.float(), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("heads,kv_heads,t", [(4, 4, 1), (4, 4, 2), (4, 1, 1), (6, 2, 1)])
def test_low_precision_cpu_steps_match_reference(dtype, heads, kv_heads, t):
    """Decode steps in bf16/fp16 on CPU (one query row per kv head runs in fp32 inside): the result
    comes back in the model's dtype and matches the fp32 reference to that dtype's precision."""
    torch.manual_seed(1)
    d, start = 16, 11
    q = torch.randn(t, heads, d).to(dtype)
    k_all, v_all = torch.randn(start + t, kv_heads, d).to(dtype), torch.randn(start + t, kv_heads, d).to(dtype)
    ours = run(q, k_all, v_all, start, flash=False, dtype=dtype)
    assert ours.dtype == dtype
    exact = reference(q.float(), k_all.float(), v_all.float(), start, 1 / math.sqrt(d))
    assert torch.allclose(ours.float(), exact, atol=2e-2, rtol=2e-2), (ours.float() - exact).abs().max()


@pytest.fixture(scope="module")
def decode_kernel():
    return DecodeAttention()  # compiled once for the module (a few seconds)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_compiled_decode_step_matches_reference_at_every_cache_length(decode_kernel, dtype, tol):
    """One new token, one query row per kv head: the compiled kernel (symbolic shapes) serves every
    cache length with one build and matches the plain reference."""
    torch.manual_seed(2)
    heads, d = 4, 16
    calls = []
    kernel = decode_kernel

    def counting(*args):
        out = kernel(*args)
        calls.append(out is not None)
        return out

    for start in (1, 2, 7, 63, 200, 511):
        q = torch.randn(1, heads, d).to(dtype)
        k_all, v_all = torch.randn(start + 1, heads, d).to(dtype), torch.randn(start + 1, heads, d).to(dtype)
        ours = run(q, k_all, v_all, start, flash=False, dtype=dtype, decode=counting, capacity=512 + 256)
        exact = reference(q.float(), k_all.float(), v_all.float(), start, 1 / math.sqrt(d))
        assert ours.dtype == dtype and ours.shape == (1, heads * d)
        assert torch.allclose(ours.float(), exact, atol=tol, rtol=tol), (start, (ours.float() - exact).abs().max())
    assert calls == [True] * 6  # the kernel ran every time (no fallback)
    assert sum(key[0] == dtype for key in kernel.compiled) == 1  # one build for every length


def test_decode_kernel_is_not_used_for_shared_kv_heads_or_several_tokens_and_falls_back_when_it_fails(monkeypatch):
    torch.manual_seed(3)
    d = 16

    def must_not_run(*args):
        raise AssertionError("the decode kernel ran")

    for heads, kv_heads, t in [(4, 1, 1), (6, 2, 1), (4, 4, 2)]:  # MQA/GQA rows, or several new tokens: SDPA
        q = torch.randn(t, heads, d)
        k_all, v_all = torch.randn(9 + t, kv_heads, d), torch.randn(9 + t, kv_heads, d)
        ours = run(q, k_all, v_all, 9, flash=False, decode=must_not_run)
        assert torch.allclose(ours, reference(q, k_all, v_all, 9, 1 / math.sqrt(d)), atol=1e-5)

    broken = DecodeAttention()
    monkeypatch.setattr("inference.decode_attention._compile", lambda *a: 1 / 0)
    q = torch.randn(1, 4, d)
    k_all, v_all = torch.randn(10, 4, d), torch.randn(10, 4, d)
    ours = run(q, k_all, v_all, 9, flash=False, decode=broken)
    assert broken.compiled is None  # switched off for good
    assert torch.allclose(ours, reference(q, k_all, v_all, 9, 1 / math.sqrt(d)), atol=1e-5)


@pytest.mark.parametrize("heads,d", [(8, 8), (8, 16)])
def test_compiled_decode_step_serves_every_length_whatever_the_head_shape(heads, d):
    """The kernel is traced with an example cache length; a length equal to the head count or head dim
    (8 heads, or a head dim of 8, as the tiny CodeGen2 has) once tied the two symbols together, and
    every other cache length failed and fell back to SDPA for good."""
    torch.manual_seed(4)
    kernel = DecodeAttention()
    for start in (1, 7, 8, 9, 16, 17, 100):
        q = torch.randn(1, heads, d)
        k_all, v_all = torch.randn(start + 1, heads, d), torch.randn(start + 1, heads, d)
        ours = run(q, k_all, v_all, start, flash=False, decode=kernel, capacity=256)
        assert kernel.compiled, f"fell back to SDPA at cache length {start + 1}"
        assert torch.allclose(ours, reference(q, k_all, v_all, start, 1 / math.sqrt(d)), atol=1e-5), start
    assert len(kernel.compiled) == 1
