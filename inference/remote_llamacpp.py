"""The engine boundary (inference.api.EngineClient) over HTTP to llama.cpp's llama-server.

Torch-free: the editor side keeps its own tokenizer (the `model` option's folder; None: the shipped
model) and builds prompts with the same PromptBuilder as for the local engine; token ids go to
llama-server's `/completion` with `cache_prompt` (its KV cache keeps each slot's last prompt, so a
keystroke's prompt that shares its start with the last one is mostly reused) and one `id_slot` per
document where the server has slots for them. Tokens are streamed (SSE) to the job's stop check;
closing the stream (stop check, cancel, time limit) makes llama-server stop that task.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from concurrent.futures import Future

import httpx

from .api import GenerationJob, GenerationResult, ModelInfo, ModelSpec, RemoteSpec
from .remote_http import EngineError, RemoteEngine, model_info

__all__ = ["EngineError", "LlamaServerClient"]

log = logging.getLogger(__name__)

FIRST_TOKEN_BIAS = 1000.0  # added to the allowed first tokens' logits (token healing): greedy picks among them


class LlamaServerClient(RemoteEngine):
    """EngineClient for llama-server at `spec.endpoint` (e.g. http://127.0.0.1:8080)."""

    name = "llama.cpp"

    def __init__(self, spec: RemoteSpec | str, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(spec if isinstance(spec, RemoteSpec) else RemoteSpec("llama.cpp", spec), transport)
        self.n_slots = 1
        self._slots: OrderedDict[str, int] = OrderedDict()  # document session -> slot, least recent first
        self._eos: tuple[int, ...] = ()  # the loaded model's EOS ids: with the job's stop ids, what ends it

    def close_session(self, session: str) -> Future:
        with self._lock:
            self._slots.pop(session, None)
        return super().close_session(session)

    def snapshot(self) -> dict:
        return {**super().snapshot(), "kvSessions": len(self._slots)}

    def _load(self, spec: ModelSpec) -> ModelInfo:
        self._get_json("/health")
        props = self._get_json("/props")
        settings = props.get("default_generation_settings") or {}
        n_ctx = settings.get("n_ctx") or props.get("n_ctx")
        if not isinstance(n_ctx, int) or n_ctx <= 0:
            raise EngineError(f"{self.endpoint}/props: no context length (n_ctx) in the answer", "malformed")
        self.n_slots = max(1, int(props.get("total_slots") or 1))
        info = model_info(spec.source, n_ctx, "llama.cpp")
        self._eos = info.eos_token_ids
        with self._lock:
            self._slots.clear()
        self.model_generation += 1
        return info

    def _slot_for(self, session: str | None) -> int:
        """A slot per document, the least recently used one taken over when all are given out."""
        if session is None:
            return -1  # any idle slot
        with self._lock:
            if session in self._slots:
                self._slots.move_to_end(session)
                return self._slots[session]
            used = set(self._slots.values())
            free = [s for s in range(self.n_slots) if s not in used]
            slot = free[0] if free else self._slots.popitem(last=False)[1]
            self._slots[session] = slot
            return slot

    def _generate(self, job: GenerationJob) -> GenerationResult | None:
        if job.cancel.is_set():
            return None
        if job.model_generation not in (0, self.model_generation):
            return None
        p = job.params
        t0 = time.perf_counter()
        deadline = None if p.time_limit_s is None else time.monotonic() + p.time_limit_s
        slot = self._slot_for(job.session)
        stops = set(self._eos) | set(p.stop_token_ids)  # as the local engine (the server also ends at its EOG tokens)
        generated: list[int] = []
        timings: dict = {}
        reason = "max_tokens"
        prompt = list(job.prompt_ids)
        budget = p.max_new_tokens
        if p.first_token_ids and budget > 0:  # token healing: the first token among these, then go on freely
            reason, timings = self._stream(job, prompt, 1, slot, stops, generated, deadline,
                                           bias=p.first_token_ids)
            budget -= len(generated)
        if reason == "max_tokens" and (budget > 0 or not generated):
            first = list(generated)
            reason, more = self._stream(job, prompt + first, budget, slot, stops, generated, deadline)
            timings = _merge(timings, more) if first else more
        self.last_timings = timings
        n_prompt = len(job.prompt_ids)
        return GenerationResult(
            token_ids=generated, text="", stop_reason=reason, prompt_tokens=n_prompt,
            reused_tokens=int(timings.get("cache_n", 0)), prefill_tokens=int(timings.get("prompt_n", n_prompt)),
            prefill_ms=float(timings.get("prompt_ms", 0.0)),
            decode_ms=float(timings.get("predicted_ms", (time.perf_counter() - t0) * 1000)))

    def _stream(self, job: GenerationJob, prompt: list[int], n_predict: int, slot: int, stops: set[int],
                generated: list[int], deadline: float | None, bias=()) -> tuple[str, dict]:
        """One streamed /completion; appends the ids it yields to `generated` (feeding the stop
        check). Returns (stop reason, the server's timings when it finished the task itself)."""
        p = job.params
        body = {"prompt": prompt, "n_predict": n_predict, "stream": True, "cache_prompt": True,
                "return_tokens": True, "id_slot": slot,
                "timings_per_token": True}  # the prompt figures come with the first token, kept on an early stop
        if p.temperature <= 0:
            body.update(temperature=0.0, top_k=1, samplers=["top_k"])
        else:
            body.update(temperature=p.temperature, top_p=p.top_p)
            if p.seed is not None:
                body["seed"] = p.seed
        if bias:
            body["logit_bias"] = [[int(i), FIRST_TOKEN_BIAS] for i in bias]
        decoded = 0  # the server's count of generated tokens (a token ending inside a UTF-8 character
        # is not streamed on its own; the count tells)
        timings: dict = {}
        with self._events(job, "/completion", body, p.time_limit_s) as events:
            if job.cancel.is_set():
                return "cancelled", {}
            for chunk in events:
                if "error" in chunk:
                    raise EngineError(f"{self.endpoint}/completion: the server reported an error: "
                                      f"{str(chunk['error'])[:200]}", "server error")
                timings = chunk.get("timings") or timings
                for tok in chunk.get("tokens") or ():
                    if tok in stops:
                        return "eos", timings
                    generated.append(int(tok))
                    if job.stop_check is not None and job.stop_check(generated):
                        job.stopped_early = True
                        return "eos", timings
                decoded = int(chunk.get("tokens_predicted") or decoded)
                if chunk.get("stop"):
                    stop_type = chunk.get("stop_type")
                    if decoded > len(generated) and stop_type != "eos":
                        log.debug("llama-server: %d tokens not streamed", decoded - len(generated))
                    return ("eos" if stop_type == "eos" else "max_tokens"), timings
                if reason := self._interrupted(job, deadline):
                    return reason, timings
        return self._ended_early(job, f"{self.endpoint}/completion"), timings


def _merge(first: dict, rest: dict) -> dict:
    """Timings of a healed first token's request and the rest: the first's prompt figures, both decodes."""
    out = dict(rest)
    for key in ("cache_n", "prompt_n", "prompt_ms"):
        if key in first:
            out[key] = first[key]
    out["predicted_ms"] = first.get("predicted_ms", 0.0) + rest.get("predicted_ms", 0.0)
    return out
