"""Attention over a KV cache: one function, two backends.

flash-attn's `flash_attn_with_kvcache` is used on CUDA in fp16/bf16 when the package imports;
`torch.nn.functional.scaled_dot_product_attention` (SDPA) everywhere else. The backend also fixes the
cache layout, so buffers come from `kv_buffer_shape`:
    flash: (1, S_cap, Hk, D)   (BSHD, what flash-attn reads and writes in place)
    sdpa:  (Hk, S_cap, D)      (heads first, so a prefix view needs no copy)
Batch size is always 1: the engine serves one request at a time.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

try:  # decided once, at import
    from flash_attn import flash_attn_with_kvcache as _flash_with_kvcache
except Exception:  # ImportError, or a build that does not match the CUDA/torch here
    _flash_with_kvcache = None


def flash_available(device: torch.device | str, dtype: torch.dtype) -> bool:
    return (_flash_with_kvcache is not None and torch.device(device).type == "cuda"
            and dtype in (torch.float16, torch.bfloat16))


def kv_buffer_shape(flash: bool, kv_heads: int, capacity: int, head_dim: int) -> tuple[int, ...]:
    return (1, capacity, kv_heads, head_dim) if flash else (kv_heads, capacity, head_dim)


FOLD_MAX_TOKENS = 8  # new tokens after a cached prefix up to which query heads are folded (see attend)


@functools.lru_cache(maxsize=4)  # built once per forward, shared by every layer
def causal_mask(start: int, t: int, device: torch.device) -> torch.Tensor:
    """(T, start+T) bool: query row r (position start + r) sees keys up to its position."""
    pos = torch.arange(start, start + t, device=device)
    return torch.arange(start + t, device=device)[None, :] <= pos[:, None]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
           start: int, scale: float, flash: bool, decode=None) -> torch.Tensor:
    """Write the new keys/values at positions [start, start+T) and attend causally.

    q: (T, H, D); k, v: (T, Hk, D) with H % Hk == 0 (query head h reads kv head h // (H/Hk)).
    Returns (T, H*D). Cache positions < start must already hold earlier tokens. `decode`: a compiled
    kernel for one new token with one query row per kv head (inference.decode_attention), or None.
    """
    t, h, d = q.shape
    hk = k.shape[1]
    if flash:
        cache_len = torch.tensor([start], dtype=torch.int32, device=q.device)  # flash wants int32 seqlens
        out = _flash_with_kvcache(q[None], k_cache, v_cache, k=k[None], v=v[None], cache_seqlens=cache_len,
                                  softmax_scale=scale, causal=True)
        return out.reshape(t, h * d)
    end = start + t
    k_cache[:, start:end] = k.transpose(0, 1)
    v_cache[:, start:end] = v.transpose(0, 1)
    keys, values = k_cache[:, :end], v_cache[:, :end]  # (Hk, S, D) views
    g = h // hk
    if decode is not None and t == 1 and g == 1 and start > 0:
        out = decode(q.transpose(0, 1).contiguous(), keys, values, scale)  # (H, 1, D)
        if out is not None:
            return out.reshape(1, h * d)
    fresh = start == 0 and t > 1  # a fresh prefill: plain causal attention, SDPA skips the masked half
    if fresh or t > FOLD_MAX_TOKENS:
        # Many new tokens: query head h reads kv head h // g (enable_gqa); after a cached prefix under
        # a (T, S) mask. SDPA copies the kv heads for this, which only pays for itself when T is large;
        # a folded (g*T, S) mask costs SDPA a conversion as large as the folded rows instead (T 512,
        # S 1900, 12 query heads on one kv head: 42 ms folded+masked vs 69 ms).
        out = F.scaled_dot_product_attention(q.transpose(0, 1)[None], keys[None], values[None], is_causal=fresh,
                                             attn_mask=None if fresh else causal_mask(start, t, q.device),
                                             scale=scale, enable_gqa=g > 1)  # (1, H, T, D)
        return out[0].transpose(0, 1).reshape(t, h * d)
    mask = None if t == 1 else causal_mask(start, t, q.device)  # one new token sees every cached position
    # A few new tokens: fold the query heads that share a kv head into rows, (Hk, g*T, D), row order
    # (g, T), so each kv head is read once without copies (T 2: 0.23 ms vs 0.78 with enable_gqa).
    # 4-D inputs take SDPA's fused CPU kernel (3-D ones fall back to the slow math path).
    qf = q.view(t, hk, g, d).permute(1, 2, 0, 3).reshape(hk, g * t, d)
    if mask is not None and g > 1:
        mask = mask.repeat(g, 1)
    if g * t == 1 and q.dtype in (torch.bfloat16, torch.float16) and q.device.type == "cpu":
        # One query row per kv head (a multi-head decode step): SDPA's CPU kernel runs that 3-4x slower
        # in bf16/fp16 than in fp32, copies included (16 heads x 1500 keys: 1.38 ms vs 0.35 ms).
        out = F.scaled_dot_product_attention(qf[None].float(), keys[None].float(), values[None].float(),
                                             scale=scale).to(q.dtype)
    else:
        out = F.scaled_dot_product_attention(qf[None], keys[None], values[None], attn_mask=mask, scale=scale)
    return out.view(hk, g, t, d).permute(2, 0, 1, 3).reshape(t, h * d)
