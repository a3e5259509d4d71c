"""Generation over token ids: prefill (reusing a session's cached prefix), then a decode loop with
sampling, stop ids/strings, token/time limits, cancellation and streaming.

The engine knows nothing about prompts or editors: token ids in, token ids out (plus their text, for
stop strings). One generate at a time; `cancel` may be set from another thread. Its parameter and
result types are the engine boundary's (inference.api); inference.worker puts it behind that boundary.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import torch

from .acceleration import Acceleration
from .api import GenerationParams, GenerationResult
from .kv_cache import SessionCaches, SessionKV
from .loader import LanguageModel
from .sampling import pick_token

PREFILL_CHUNK = 512  # prompt tokens per forward during prefill (cancel and time limit are checked between)
LONG_PREFILL = 64  # a prefill this long runs on `Engine.prefill_threads` (when set)
AUTOCAST_ROWS = 64  # under autocast a forward runs a multiple of this many tokens (see _prefill_chunks)


class Engine:
    """Generation over per-session KV caches.

    `acceleration` (inference.acceleration; the worker passes `lm.acceleration`) gives the long
    prefill's threads (a compute-bound matrix product that scales with cores, where decoding is
    memory-bound small steps kept off one core for the server) and its autocast dtype. None: every
    prefill on the caller's torch threads in the model's dtype (tests, one-shot commands)."""

    def __init__(self, lm: LanguageModel, kv_budget_bytes: int = 256 * 2**20,
                 acceleration: Acceleration | None = None):
        self.lm = lm
        self.caches = SessionCaches(lm.kv_spec(), kv_budget_bytes)
        acc = acceleration or Acceleration()
        self.prefill_threads: int | None = acc.prefill_threads
        self.prefill_autocast: torch.dtype | None = acc.prefill_autocast  # a long prefill runs under autocast

    # -- sessions
    def close_session(self, session: str) -> None:
        self.caches.close(session)

    def clear_sessions(self) -> None:
        """Drop every session's cache (rebuilt on demand)."""
        self.caches.clear()

    def cache_bytes(self) -> int:
        return self.caches.nbytes()

    def kv_stats(self) -> dict:
        """{"bytes", "documents", "caches"} (inference.kv_cache.SessionCaches.stats)."""
        return self.caches.stats()

    def session_tokens(self, session: str) -> list[int]:
        return self.caches.held(session)

    # -- generation
    def _forward(self, kv: SessionKV, ids: list[int]) -> torch.Tensor:
        """Run `ids` at kv.start; returns fp32 logits of the last position (V,)."""
        model = self.lm.model
        hidden = model.forward(torch.tensor(ids, dtype=torch.long, device=self.lm.device), kv)
        kv.advance(ids)
        last = hidden[-1:]
        if torch.is_autocast_enabled(self.lm.device.type):  # a long prefill's last row: no need to cast the head
            with torch.autocast(self.lm.device.type, enabled=False):
                return model.logits(last.to(self.lm.dtype))[0]
        return model.logits(last)[0]

    def _prefill(self, kv: SessionKV, ids: list[int], cancel: threading.Event | None,
                 deadline: float | None) -> tuple[torch.Tensor | None, str | None]:
        """A long prefill (>= LONG_PREFILL tokens) is a compute-bound matrix product: it runs on
        `prefill_threads` and, when `prefill_autocast` is set, under autocast (an fp32 model's
        prefill in bf16 on a CPU with bf16 instructions: 1.4-1.7x faster at 1 900 tokens here; the
        cached keys and values stay fp32 and decoding stays fp32)."""
        if len(ids) < LONG_PREFILL:
            return self._prefill_chunks(kv, ids, cancel, deadline)
        decode_threads = torch.get_num_threads()
        wanted = self.prefill_threads
        autocast = torch.autocast(self.lm.device.type, dtype=self.prefill_autocast or torch.bfloat16,
                                  enabled=self.prefill_autocast is not None)
        if wanted and wanted != decode_threads:
            torch.set_num_threads(wanted)
        try:
            with autocast:
                return self._prefill_chunks(kv, ids, cancel, deadline)
        finally:
            torch.set_num_threads(decode_threads)

    def _prefill_chunks(self, kv: SessionKV, ids: list[int], cancel: threading.Event | None,
                        deadline: float | None) -> tuple[torch.Tensor | None, str | None]:
        """Run the new prompt tokens in chunks of PREFILL_CHUNK: a long prefill (opening a big file,
        a jump) can be cancelled or time out between chunks, and what it has computed stays in the
        session's cache, so the next request for the document goes on from there. Returns the last
        position's logits, or (None, "cancelled" | "time")."""
        model = self.lm.model
        device = self.lm.device.type
        autocast = torch.is_autocast_enabled(device)
        while True:
            # Under autocast every forward runs a multiple of AUTOCAST_ROWS tokens and the last few
            # tokens run in the model's dtype: oneDNN compiles its bf16 kernels per matrix shape and
            # keeps them, so one shape per prompt length made resident memory grow without end
            # (~50 MB over a 20 s soak).
            if len(ids) > PREFILL_CHUNK:
                size = PREFILL_CHUNK
            elif autocast and len(ids) > AUTOCAST_ROWS and len(ids) % AUTOCAST_ROWS:
                size = len(ids) - len(ids) % AUTOCAST_ROWS
            else:
                break
            chunk, ids = ids[:size], ids[size:]
            model.forward(torch.tensor(chunk, dtype=torch.long, device=self.lm.device), kv)
            kv.advance(chunk)
            if cancel is not None and cancel.is_set():
                return None, "cancelled"
            if deadline is not None and time.perf_counter() >= deadline:
                return None, "time"
        if autocast and len(ids) % AUTOCAST_ROWS:
            with torch.autocast(device, enabled=False):
                return self._forward(kv, ids), None
        return self._forward(kv, ids), None

    @torch.inference_mode()
    def generate(self, prompt_ids: list[int], params: GenerationParams, session: str | None = None,
                 cancel: threading.Event | None = None,
                 on_token: Callable[[int], None] | None = None) -> GenerationResult:
        prompt = [int(t) for t in prompt_ids]
        if not prompt:
            raise ValueError("empty prompt: at least one token is needed")
        if len(prompt) >= self.lm.max_context:
            raise ValueError(f"prompt of {len(prompt)} tokens does not fit the model's context of "
                             f"{self.lm.max_context}")
        t0 = time.perf_counter()
        deadline = None if params.time_limit_s is None else t0 + params.time_limit_s
        kv, held = self.caches.match(session, prompt)
        reused = min(held, len(prompt) - 1)  # the last prompt token is always run for its logits
        kv.truncate(reused)
        budget = min(params.max_new_tokens, self.lm.max_context - len(prompt))
        kv.reserve(len(prompt) + max(budget - 1, 0))
        self.caches.evict(keep=session)

        stops = set(self.lm.eos_token_ids) | set(params.stop_token_ids)
        generator = None
        if params.temperature > 0:
            generator = torch.Generator(device=self.lm.device)
            generator.manual_seed(params.seed if params.seed is not None else int(time.time_ns() % 2**63))
        out: list[int] = []
        text = ""
        reason = "max_tokens"
        if cancel is not None and cancel.is_set():
            reason = "cancelled"
            logits = None
        else:
            logits, stopped = self._prefill(kv, prompt[reused:], cancel, deadline)
            if stopped:
                reason = stopped
        if budget <= 0:  # max_new_tokens=0: prefill only (warms the session's cache)
            logits = None
        t1 = time.perf_counter()
        while logits is not None:
            if not out and params.first_token_ids:
                allowed = torch.tensor(params.first_token_ids, device=logits.device)
                logits = torch.full_like(logits, float("-inf")).index_copy_(0, allowed, logits[allowed])
            token = pick_token(logits, params.temperature, params.top_p, generator)
            if token in stops:
                reason = "eos"
                break
            out.append(token)
            if on_token is not None:
                on_token(token)
            if params.stop_strings:
                text = self.lm.decode(out)
                cut = _first_stop(text, params.stop_strings)
                if cut is not None:
                    text, reason = text[:cut], "stop_string"
                    break
            if len(out) >= budget:
                reason = "max_tokens"
                break
            if cancel is not None and cancel.is_set():
                reason = "cancelled"
                break
            if deadline is not None and time.perf_counter() >= deadline:
                reason = "time"
                break
            logits = self._forward(kv, [token])
        t2 = time.perf_counter()
        if reason != "stop_string":
            text = self.lm.decode(out)
        self.caches.evict(keep=session)
        return GenerationResult(out, text, reason, len(prompt), reused, len(prompt) - reused,
                                (t1 - t0) * 1000, (t2 - t1) * 1000)


def _first_stop(text: str, stop_strings) -> int | None:
    cuts = [i for i in (text.find(s) for s in stop_strings if s) if i >= 0]
    return min(cuts) if cuts else None
