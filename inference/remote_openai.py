"""The engine boundary (inference.api.EngineClient) over an OpenAI-compatible `/v1/completions`:
vLLM (backend "vllm") or any server with that route (backend "openai": Ollama, LM Studio, TGI...).

Torch-free. Prompts are built by the editor side's PromptBuilder as for the local engine. vLLM takes
them as token ids, so a keystroke's prompt shares its start with the last one token for token and
vLLM's automatic prefix caching reuses it (in whole blocks: `--block-size 32` reuses more than the
CPU default of 128), as the local KV cache does; vLLM streams the generated ids back, one per event
(`return_token_ids`), and stops at the stop ids itself. A text-only server gets
the same prompt as text (the ids decoded, special tokens kept) and streams text, which is encoded
again with the model's tokenizer for the stop check. Closing the stream (a newer keystroke, a
cancel, the stop check) makes the server abort the request.
"""

from __future__ import annotations

import logging
import time

import httpx

from .api import GenerationJob, GenerationResult, ModelInfo, ModelSpec, RemoteSpec
from .remote_http import EngineError, RemoteEngine, config_context_length, model_info

__all__ = ["OpenAICompletionsClient"]

log = logging.getLogger(__name__)

FIRST_TOKEN_BIAS = 100.0  # OpenAI's largest logit bias: the allowed first tokens win a greedy pick (token healing)
MAX_STOP_STRINGS = 4  # OpenAI's own limit on `stop`; other servers take more but need no more
DEFAULT_CONTEXT = 2048  # when neither the server nor the config says


class OpenAICompletionsClient(RemoteEngine):
    """EngineClient for `/v1/completions` at `spec.endpoint` (e.g. http://127.0.0.1:8000)."""

    def __init__(self, spec: RemoteSpec, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(spec, transport)
        self.name = spec.backend
        self.token_prompts = spec.backend == "vllm"  # vLLM takes and gives token ids
        self.served_model: str | None = None
        self._info: ModelInfo | None = None
        self._tok = None  # the model's tokenizer (text prompts, text answers)

    def _load(self, spec: ModelSpec) -> ModelInfo:
        listed = self._get_json("/v1/models").get("data")
        if not isinstance(listed, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in listed):
            raise EngineError(f"{self.endpoint}/v1/models: expected a list of models with ids", "malformed")
        names = [m["id"] for m in listed]
        wanted = self.spec.served_model or (names[0] if names else None)
        if wanted not in names:
            served = ", ".join(names) or "none"
            raise EngineError(f"{self.endpoint} serves no model named {wanted!r} (it serves: {served}); "
                              "set 'servedModel' to one of those", "model")
        entry = listed[names.index(wanted)]
        max_context = entry.get("max_model_len") or config_context_length(spec.source) or DEFAULT_CONTEXT
        info = model_info(spec.source, int(max_context), self.name)
        self._tok = info.tokenizer()
        if self.name == "vllm":
            self._check_tokenizer(wanted)
        self.served_model, self._info = wanted, info
        self.model_generation += 1
        return info

    def _check_tokenizer(self, served: str) -> None:
        """vLLM tokenizes with its model's tokenizer: ids from another vocabulary would be nonsense
        to it, so a `model` folder whose tokenizer differs is refused at load."""
        sample = "def add(a, b):\n    return a + b  # sum"
        try:
            answer = self._http.post("/tokenize", json={"model": served, "prompt": sample, "add_special_tokens": False})
        except httpx.HTTPError:
            return  # not there: nothing to compare (the generation would fail loudly anyway)
        if answer.status_code != 200:
            return
        theirs = answer.json().get("tokens")
        ours = self._tok.encode(sample, add_special_tokens=False).ids
        if isinstance(theirs, list) and theirs != ours:
            raise EngineError(f"{self.endpoint}: the served model {served!r} tokenizes differently from the "
                              "'model' folder's tokenizer; point 'model' at the served model's folder", "model")

    def _generate(self, job: GenerationJob) -> GenerationResult | None:
        if job.cancel.is_set() or job.model_generation not in (0, self.model_generation):
            return None
        p = job.params
        t0 = time.perf_counter()
        deadline = None if p.time_limit_s is None else time.monotonic() + p.time_limit_s
        stops = set(self._info.eos_token_ids) | set(p.stop_token_ids)
        generated: list[int] = []
        usage: dict = {}
        reason = "max_tokens"
        budget = max(1, p.max_new_tokens)  # a prefill (0) asks for one token: the prompt is cached all the same
        if p.first_token_ids and p.max_new_tokens > 0:  # token healing: the first token among these, then freely
            reason, usage = self._stream(job, list(job.prompt_ids), 1, stops, generated, deadline, p.first_token_ids)
            budget -= len(generated)
        if reason == "max_tokens" and budget > 0:
            first_usage = usage
            reason, usage = self._stream(job, list(job.prompt_ids) + generated, budget, stops, generated, deadline)
            usage = first_usage or usage  # the healed request's figures are the prompt's
        if p.max_new_tokens == 0:
            generated.clear()
        n_prompt = len(job.prompt_ids)
        cached = int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
        self.last_timings = {"prompt_tokens": usage.get("prompt_tokens", n_prompt), "cached_tokens": cached}
        return GenerationResult(token_ids=generated, text="", stop_reason=reason, prompt_tokens=n_prompt,
                                reused_tokens=cached, prefill_tokens=n_prompt - cached, prefill_ms=0.0,
                                decode_ms=(time.perf_counter() - t0) * 1000)

    def _body(self, job: GenerationJob, prompt: list[int], n: int, stops: set[int], bias=()) -> dict:
        p = job.params
        body = {"model": self.served_model, "max_tokens": n, "stream": True,
                "stream_options": {"include_usage": True}, "temperature": max(0.0, p.temperature)}
        if p.temperature > 0:
            body["top_p"] = p.top_p
            if p.seed is not None:
                body["seed"] = p.seed
        if self.token_prompts:
            body.update(prompt=prompt, stop_token_ids=sorted(stops), skip_special_tokens=False, return_token_ids=True)
            # usage with every event: an early stop (the end of the line) still knows the cached tokens
            body["stream_options"]["continuous_usage_stats"] = True
            if bias:  # token healing: vLLM picks the first token among exactly these
                body["allowed_token_ids"] = sorted(bias)
        else:
            if bias:
                body["logit_bias"] = {str(i): FIRST_TOKEN_BIAS for i in bias}
            body["prompt"] = self._tok.decode(prompt, skip_special_tokens=False)
            words = [self._tok.id_to_token(i) for i in sorted(stops)]
            body["stop"] = [w for w in words if w][:MAX_STOP_STRINGS]
        return body

    def _stream(self, job: GenerationJob, prompt: list[int], n: int, stops: set[int], generated: list[int],
                deadline: float | None, bias=()) -> tuple[str, dict]:
        """One streamed completion; appends the ids it yields to `generated` (feeding the stop check).
        Returns (stop reason, the server's usage figures when it sent them)."""
        url = f"{self.endpoint}/v1/completions"
        start = len(generated)
        text = ""  # a text-only server's answer so far
        usage: dict = {}
        with self._events(job, "/v1/completions", self._body(job, prompt, n, stops, bias), job.params.time_limit_s) as events:
            for chunk in events:
                if "error" in chunk:  # vLLM's engine failing (or stopping) mid-answer
                    raise EngineError(f"{url}: the server reported an error: {str(chunk['error'])[:200]}", "http 5xx")
                usage = chunk.get("usage") or usage
                choices = chunk.get("choices")
                if not isinstance(choices, list):
                    raise EngineError(f"{url}: an event without 'choices' ({str(chunk)[:80]})", "malformed")
                if not choices:
                    continue  # the usage event
                choice = choices[0]
                if self.token_prompts:
                    new = _token_ids(url, choice)
                    for tok in new:
                        if tok in stops:
                            return "eos", usage
                        generated.append(tok)
                else:  # text: encoded again as a whole (a token can grow as its text arrives)
                    new = str(choice.get("text") or "")
                    text += new
                    generated[start:] = self._tok.encode(text, add_special_tokens=False).ids
                if new and job.stop_check is not None and job.stop_check(generated):
                    job.stopped_early = True
                    return "eos", usage
                finish = choice.get("finish_reason")
                if finish:
                    return ("max_tokens" if finish == "length" else "eos"), _rest_usage(events, usage)
                if reason := self._interrupted(job, deadline):
                    return reason, usage
        return self._ended_early(job, url), usage


def _token_ids(url: str, choice: dict) -> list[int]:
    """vLLM's streamed ids (`return_token_ids`): one per event, even inside a UTF-8 character."""
    tokens = choice.get("token_ids")
    if tokens is None:
        if choice.get("text"):
            raise EngineError(f"{url}: the answer has no token ids (is this vLLM? use backend 'openai' for other "
                              "servers)", "malformed")
        return []
    if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise EngineError(f"{url}: token ids expected as a list of integers, got {str(tokens)[:80]}", "malformed")
    return tokens


def _rest_usage(events, usage: dict) -> dict:
    """After the last choice the usage event follows (stream_options.include_usage): read it."""
    for chunk in events:
        usage = chunk.get("usage") or usage
    return usage
