"""The engine boundary (inference.api.EngineClient) over HTTP to llama.cpp's llama-server.

Torch-free: the editor side keeps its own tokenizer (the `model` option's folder; None: the shipped
model) and builds prompts with the same PromptBuilder as for the local engine; token ids go to
llama-server's `/completion` with `cache_prompt` (its KV cache keeps each slot's last prompt, so a
keystroke's prompt that shares its start with the last one is mostly reused) and one `id_slot` per
document where the server has slots for them. Tokens are streamed (SSE) to the job's stop check;
closing the stream (stop check, cancel, time limit) makes llama-server stop that task.

Each job runs on a thread of its own; failures fail the job's Future with an EngineError naming
the endpoint and what went wrong (the API key, when there is one, is never in a message).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import httpx

from .api import GenerationJob, GenerationResult, ModelError, ModelInfo, ModelSpec

__all__ = ["EngineError", "LlamaServerClient"]

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
CONNECT_TIMEOUT_S = 3.0
FIRST_TOKEN_BIAS = 1000.0  # added to the allowed first tokens' logits (token healing): greedy picks among them


class EngineError(ModelError):
    """A remote engine failed (unreachable, reset, an HTTP error, malformed answer). `kind` names the
    kind of failure, so the editor side can tell the user once per kind, not once per keystroke."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def tokenizer_folder(source: str | None) -> Path:
    """The folder holding the tokenizer and config for a remote engine's model (None: the shipped one)."""
    if source is None:
        return DEFAULT_MODEL_DIR
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True, allow_patterns=[
            "config.json", "tokenizer.json", "vocab.json", "merges.txt", "added_tokens.json",
            "special_tokens_map.json", "tokenizer_config.json"]))
    except Exception:  # noqa: BLE001 - not installed, not cached, not a hub id
        raise ModelError(f"{source}: no such folder (for a remote engine, 'model' names the folder, or a hub id "
                         "already in the Hugging Face cache, with the served model's tokenizer)") from None


def model_info(source: str | None, max_context: int) -> ModelInfo:
    """What the editor side needs, from the tokenizer folder alone (no weights)."""
    from .checkpoint_config import bos_ids, detect_family, eos_token_ids, read_config
    from .fim import fim_format
    from .tokenizer_files import load_tokenizer

    folder = tokenizer_folder(source)
    cfg = read_config(folder)
    tok = load_tokenizer(folder)
    family = cfg.get("infill_ls_family") or detect_family(cfg, tok, folder)
    return ModelInfo(family, tok.to_str(), fim_format(family, tok), tuple(bos_ids(family, tok)),
                     eos_token_ids(family, tok, cfg), max_context, "llama.cpp", "server")


class LlamaServerClient:
    """EngineClient for llama-server at `endpoint` (e.g. http://127.0.0.1:8080)."""

    def __init__(self, endpoint: str, api_key: str | None = None, transport: httpx.BaseTransport | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.endpoint, headers=headers, transport=transport,
                                  timeout=httpx.Timeout(30.0, connect=CONNECT_TIMEOUT_S))
        self.model_generation = 0
        self.decode = "remote"
        self.n_slots = 1
        self._slots: OrderedDict[str, int] = OrderedDict()  # document session -> slot, least recent first
        self._streams: dict[int, httpx.Response] = {}  # id(job) -> its open response (closed by cancel)
        self._lock = threading.Lock()
        self._closed = False
        self.last_timings: dict = {}  # llama-server's `timings` of the last finished job
        self._eos: tuple[int, ...] = ()  # the loaded model's EOS ids: with the job's stop ids, what ends it

    # -- EngineClient
    def load(self, spec: ModelSpec) -> Future:
        return self._start(self._load, spec)

    def generate(self, job: GenerationJob) -> Future:
        return self._start(self._generate, job)

    def prefill(self, job: GenerationJob) -> Future:
        job.params = replace(job.params, max_new_tokens=0)
        return self._start(self._generate, job)

    def cancel(self, job: GenerationJob) -> None:
        job.cancel.set()
        with self._lock:
            response = self._streams.get(id(job))
        if response is not None:
            _close_quietly(response)

    def close_session(self, session: str) -> Future:
        with self._lock:
            self._slots.pop(session, None)
        done: Future = Future()
        done.set_result(None)
        return done

    def snapshot(self) -> dict:
        return {"kvCacheBytes": 0, "kvSessions": len(self._slots), "engine": "llama.cpp",
                "engineTimings": dict(self.last_timings)}

    def shutdown(self, timeout: float = 2.0) -> None:
        self._closed = True
        with self._lock:
            streams = list(self._streams.values())
        for response in streams:
            _close_quietly(response)
        self._http.close()

    # -- on a job's thread
    def _start(self, fn, arg) -> Future:
        fut: Future = Future()
        if self._closed:
            fut.set_exception(EngineError("the llama-server client has shut down", "closed"))
            return fut

        def run():
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn(arg))
            except BaseException as e:  # noqa: BLE001 - a job's failure is its future's
                fut.set_exception(e)

        threading.Thread(target=run, name="infill-llamacpp", daemon=True).start()
        return fut

    def _load(self, spec: ModelSpec) -> ModelInfo:
        self._get_json("/health")
        props = self._get_json("/props")
        settings = props.get("default_generation_settings") or {}
        n_ctx = settings.get("n_ctx") or props.get("n_ctx")
        if not isinstance(n_ctx, int) or n_ctx <= 0:
            raise EngineError(f"{self.endpoint}/props: no context length (n_ctx) in the answer", "malformed")
        self.n_slots = max(1, int(props.get("total_slots") or 1))
        info = model_info(spec.source, n_ctx)
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
        url = f"{self.endpoint}/completion"
        decoded = 0  # the server's count of generated tokens (a token ending inside a UTF-8 character
        # is not streamed on its own; the count tells)
        try:
            with self._http.stream("POST", "/completion", json=body) as response:
                with self._lock:
                    self._streams[id(job)] = response
                try:
                    if response.status_code >= 400:
                        response.read()
                        raise _http_error(url, response)
                    if job.cancel.is_set():
                        return "cancelled", {}
                    timings: dict = {}
                    for line in response.iter_lines():
                        if not line.startswith("data:"):
                            continue
                        chunk = _parse(url, line[5:])
                        if "error" in chunk:
                            raise EngineError(f"{url}: the server reported an error: {str(chunk['error'])[:200]}",
                                              "server error")
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
                        if job.cancel.is_set():
                            return "cancelled", timings
                        if deadline is not None and time.monotonic() > deadline:
                            return "time", timings
                    if job.cancel.is_set():
                        return "cancelled", timings
                    raise EngineError(f"{url}: the stream ended before the answer did", "reset")
                finally:
                    with self._lock:
                        self._streams.pop(id(job), None)
        except EngineError:
            raise
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise EngineError(f"cannot reach llama-server at {self.endpoint} ({_reason(e)})", "unreachable") from None
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.StreamClosed, httpx.ReadTimeout) as e:
            if job.cancel.is_set():
                return "cancelled", {}
            raise EngineError(f"{url}: connection lost mid-answer ({_reason(e)})", "reset") from None
        except httpx.HTTPError as e:
            if job.cancel.is_set():
                return "cancelled", {}
            raise EngineError(f"{url}: {_reason(e)}", "unreachable") from None

    def _get_json(self, path: str) -> dict:
        url = f"{self.endpoint}{path}"
        try:
            response = self._http.get(path)
        except httpx.HTTPError as e:
            raise EngineError(f"cannot reach llama-server at {self.endpoint} ({_reason(e)})", "unreachable") from None
        if response.status_code >= 400:
            raise _http_error(url, response)
        data = _parse(url, response.text)
        return data


def _merge(first: dict, rest: dict) -> dict:
    """Timings of a healed first token's request and the rest: the first's prompt figures, both decodes."""
    out = dict(rest)
    for key in ("cache_n", "prompt_n", "prompt_ms"):
        if key in first:
            out[key] = first[key]
    out["predicted_ms"] = first.get("predicted_ms", 0.0) + rest.get("predicted_ms", 0.0)
    return out


def _parse(url: str, text: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError:
        raise EngineError(f"{url}: malformed JSON in the answer ({text.strip()[:80]!r})", "malformed") from None
    if not isinstance(data, dict):
        raise EngineError(f"{url}: expected a JSON object, got {type(data).__name__}", "malformed")
    return data


def _http_error(url: str, response: httpx.Response) -> EngineError:
    code = response.status_code
    try:
        detail = response.json().get("error", {})
        detail = detail.get("message", detail) if isinstance(detail, dict) else detail
    except Exception:  # noqa: BLE001
        detail = response.text
    hint = {401: " (the API key is missing or wrong)", 403: " (the API key is not allowed)",
            404: " (no such endpoint or model)", 503: " (the server is still loading its model)"}.get(code, "")
    kind = "auth" if code in (401, 403) else f"http {code // 100}xx"
    return EngineError(f"{url} answered HTTP {code}{hint}: {str(detail)[:200]}", kind)


def _reason(e: Exception) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _close_quietly(response: httpx.Response) -> None:
    try:
        response.close()
    except Exception:  # noqa: BLE001 - closing from another thread may race the reader; it stops either way
        pass
