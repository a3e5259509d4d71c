"""Choosing the next token from fp32 logits: greedy, or temperature + nucleus (top-p) sampling."""

from __future__ import annotations

import torch


def pick_token(logits: torch.Tensor, temperature: float, top_p: float,
               generator: torch.Generator | None) -> int:
    """logits (V,) fp32 -> token id. temperature 0 means greedy (argmax, first index on ties)."""
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass of strictly better tokens
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)  # always keeps the best token
        choice = torch.multinomial(sorted_probs, 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=generator))
