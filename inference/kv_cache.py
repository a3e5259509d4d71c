"""Per-session KV caches built for editing.

Each session (one per document) owns preallocated key/value buffers for every layer and remembers the
token ids they hold. A new prompt reuses the longest common token prefix (`SessionKV.match`), the rest is
dropped (`truncate`) and only the new tokens are prefilled. `SessionCaches` keeps them per document
and is used through its verbs only (match a prompt, evict, close, clear, stats). Sessions live under a byte budget; the least
recently used ones are evicted first. Buffers grow in steps of `GROW` positions up to the model's limit.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from .attention import attend, kv_buffer_shape

GROW = 256  # positions added per growth step


@dataclass(frozen=True)
class KVSpec:
    """What a model needs cached: n_layers x (kv_heads, head_dim) in dtype, up to max_positions."""
    n_layers: int
    kv_heads: int
    head_dim: int
    max_positions: int
    dtype: torch.dtype
    device: torch.device
    flash: bool
    decode: object = None  # the compiled decode-step attention (inference.decode_attention), if any

    def bytes_per_position(self) -> int:
        return 2 * self.n_layers * self.kv_heads * self.head_dim * torch.finfo(self.dtype).bits // 8


class SessionKV:
    """One session's buffers. `start` is where the model's next forward writes; the model calls
    `attend(layer, q, k, v)` for each layer, then the caller `advance`s by the number of tokens."""

    def __init__(self, spec: KVSpec):
        self.spec = spec
        self.tokens: list[int] = []
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.capacity = 0
        self.start = 0

    def nbytes(self) -> int:
        return self.capacity * self.spec.bytes_per_position()

    def reserve(self, positions: int) -> None:
        """Make room for `positions` tokens (keeping what is held)."""
        spec = self.spec
        if positions > spec.max_positions:
            raise ValueError(f"{positions} tokens exceed the model's context of {spec.max_positions}")
        if positions <= self.capacity:
            return
        cap = min(spec.max_positions, -(-positions // GROW) * GROW)
        shape = kv_buffer_shape(spec.flash, spec.kv_heads, cap, spec.head_dim)
        held = len(self.tokens)
        seq_dim = 1  # positions are dim 1 in both layouts
        for layer in range(spec.n_layers):
            for bufs in (self.keys, self.values):
                new = torch.empty(shape, dtype=spec.dtype, device=spec.device)
                if layer < len(bufs):
                    if held:
                        new.narrow(seq_dim, 0, held).copy_(bufs[layer].narrow(seq_dim, 0, held))
                    bufs[layer] = new
                else:
                    bufs.append(new)
        self.capacity = cap

    def match(self, prompt: list[int]) -> int:
        """Length of the common prefix of what is held and `prompt`."""
        n = 0
        for a, b in zip(self.tokens, prompt):
            if a != b:
                break
            n += 1
        return n

    def truncate(self, length: int) -> None:
        del self.tokens[length:]
        self.start = len(self.tokens)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        return attend(q, k, v, self.keys[layer], self.values[layer], self.start, scale, self.spec.flash,
                      self.spec.decode)

    def advance(self, token_ids: list[int]) -> None:
        """Record the tokens the last forward wrote."""
        self.tokens.extend(token_ids)
        self.start = len(self.tokens)


SECOND_PLACE_MIN = 64  # a cache this long (tokens) is kept as the second place when a prompt moves away
CURRENT, SECOND = "current", "second"  # a document's two places


class SessionCaches:
    """The KV caches of all sessions (documents) under `budget_bytes` (the sum of allocated buffers),
    used through a few verbs only: `match` a prompt, `evict` to the budget, `close` a document,
    `clear`, `stats` (and `held`, what a document's cache holds). Each document has up to two
    places (caches), kept in one least-recently-used order across documents."""

    def __init__(self, spec: KVSpec, budget_bytes: int):
        self.spec = spec
        self.budget_bytes = budget_bytes
        self._lru: OrderedDict[tuple[str, str], SessionKV] = OrderedDict()  # (document, place), oldest first

    def fresh(self) -> SessionKV:
        """A cache that is not kept (a run with no session)."""
        return SessionKV(self.spec)

    def match(self, key: str | None, prompt: list[int]) -> tuple[SessionKV, int]:
        """The document's cache to run `prompt` in (made most recent), and how many leading prompt
        tokens it holds. A document keeps a second cache for the place it was at before: a jump
        elsewhere and back, or a switch back after a jump, finds its prompt still cached. Of the
        two, the one sharing the longer start with the prompt is used; a prompt that shares less
        than half of a long cache moves that cache to second place (replacing the older one)
        instead of overwriting it. Both count against the budget, least recently used first."""
        if key is None:
            return self.fresh(), 0
        lru, cur, sec = self._lru, (key, CURRENT), (key, SECOND)
        kv, other = lru.get(cur), lru.get(sec)
        if kv is None and other is not None:  # the current cache was evicted, the second one not
            kv, other = lru.pop(sec), None
        held = kv.match(prompt) if kv is not None else 0
        other_held = other.match(prompt) if kv is not None and other is not None else -1
        if other_held > held:  # the second place fits better: the two swap
            lru[sec] = lru[cur]
            kv, held = other, other_held
        elif kv is not None and len(kv.tokens) >= SECOND_PLACE_MIN and 2 * held < len(kv.tokens):
            lru.pop(sec, None)
            lru[sec] = kv
            kv, held = None, 0
        lru.pop(cur, None)
        lru[cur] = kv if kv is not None else SessionKV(self.spec)
        return lru[cur], held

    def held(self, key: str) -> list[int]:
        """The token ids the document's current cache holds."""
        kv = self._lru.get((key, CURRENT))
        return list(kv.tokens) if kv else []

    def close(self, key: str) -> None:
        self._lru.pop((key, CURRENT), None)
        self._lru.pop((key, SECOND), None)

    def clear(self) -> None:
        """Drop every cache (they are rebuilt on demand), e.g. after running out of memory."""
        self._lru.clear()

    def nbytes(self) -> int:
        return sum(kv.nbytes() for kv in self._lru.values())

    def stats(self) -> dict:
        """{"bytes", "documents", "caches"}: what is held now."""
        return {"bytes": self.nbytes(), "documents": len({doc for doc, _ in self._lru}), "caches": len(self._lru)}

    def evict(self, keep: str | None = None) -> list[tuple[str, str]]:
        """Drop least recently used caches (never `keep`'s current one unless it alone is over
        budget) until the total fits the budget. Returns the (document, place) pairs dropped."""
        evicted = []
        for place in list(self._lru):
            if self.nbytes() <= self.budget_bytes:
                break
            if place == (keep, CURRENT):
                continue
            del self._lru[place]
            evicted.append(place)
        if (keep, CURRENT) in self._lru and self.nbytes() > self.budget_bytes:
            del self._lru[(keep, CURRENT)]
            evicted.append((keep, CURRENT))
        return evicted
