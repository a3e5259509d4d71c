"""What the clients of remote engines (llama-server, vLLM, any OpenAI-compatible server) share: the
HTTP client (httpx: TLS verified, a CA bundle, HTTPS_PROXY/NO_PROXY honoured, the API key read from
the environment), the model's description from its tokenizer folder, one thread per job, streamed
answers that a cancel closes, and failures as EngineErrors of a named kind.

Torch-free, like the rest of the engine boundary. The API key is only ever in the Authorization
header: never in a message, a log line or the stats.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import httpx

from .api import GenerationJob, ModelError, ModelInfo, RemoteSpec

__all__ = ["EngineError", "RemoteEngine", "model_info", "tokenizer_folder"]

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
CONNECT_TIMEOUT_S = 3.0
DEFAULT_READ_TIMEOUT_S = 30.0  # a job without a time limit (a load, a prefetch)
TOKENIZER_FILES = ["config.json", "tokenizer.json", "vocab.json", "merges.txt", "added_tokens.json",
                   "special_tokens_map.json", "tokenizer_config.json"]


class EngineError(ModelError):
    """A remote engine failed (unreachable, reset, an HTTP error, a malformed answer...). `kind` names
    the kind of failure, so the editor side tells the user once per kind, not once per keystroke."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def transient(self) -> bool:
        """A failure that may go away by itself (the server is down, restarting, overloaded): worth
        trying again later. A wrong key, model name or answer format needs the user."""
        return self.kind in ("unreachable", "reset", "timeout", "http 5xx")


def tokenizer_folder(source: str | None) -> Path:
    """The folder holding the tokenizer and config for a remote engine's model (None: the shipped one)."""
    if source is None:
        return DEFAULT_MODEL_DIR
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True, allow_patterns=TOKENIZER_FILES))
    except Exception:  # noqa: BLE001 - not installed, not cached, not a hub id
        raise ModelError(f"{source}: no such folder (for a remote engine, 'model' names the folder, or a hub id "
                         "already in the Hugging Face cache, with the served model's tokenizer)") from None


def model_info(source: str | None, max_context: int, device: str) -> ModelInfo:
    """What the editor side needs, from the tokenizer folder alone (no weights). A family that
    infill-ls's own engine does not load (qwen2, starcoder2, llama...) is named by its model_type,
    and its FIM format found from the tokenizer's special tokens."""
    from .checkpoint_config import bos_ids, detect_family, eos_token_ids, read_config
    from .fim import detect_fim_format, fim_format
    from .tokenizer_files import load_tokenizer

    folder = tokenizer_folder(source)
    cfg = read_config(folder)
    tok = load_tokenizer(folder)
    try:
        family = cfg.get("infill_ls_family") or detect_family(cfg, tok, folder)
        fim = fim_format(family, tok) or detect_fim_format(tok)
        bos = tuple(bos_ids(family, tok))
    except ModelError:  # served by the remote engine, not loadable here: only its tokenizer matters
        family = str(cfg.get("model_type") or "unknown")
        fim = detect_fim_format(tok)
        bos = tokenizer_bos(folder, tok)
    return ModelInfo(family, tok.to_str(), fim, bos, eos_token_ids(family, tok, cfg), max_context, device, "server")


def tokenizer_bos(folder: Path, tok) -> tuple[int, ...]:
    """The BOS a tokenizer puts before every text (Llama, Mistral, DeepSeek: `add_bos_token` in
    tokenizer_config.json, or a template that starts with a special token); () for none (Qwen)."""
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    if config.get("add_bos_token"):
        bos = config.get("bos_token")
        bos = bos.get("content") if isinstance(bos, dict) else bos
        if isinstance(bos, str) and tok.token_to_id(bos) is not None:
            return (tok.token_to_id(bos),)
    if config.get("add_bos_token") is False:
        return ()
    template = (json.loads(tok.to_str()).get("post_processor") or {}).get("single") or []
    first = template[0] if template else {}
    if "SpecialToken" in first and tok.token_to_id(first["SpecialToken"]["id"]) is not None:
        return (tok.token_to_id(first["SpecialToken"]["id"]),)
    return ()


def config_context_length(source: str | None) -> int | None:
    """The context length the checkpoint's config.json gives, where the server does not say."""
    from .checkpoint_config import read_config

    cfg = read_config(tokenizer_folder(source))
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        if isinstance(cfg.get(key), int) and cfg[key] > 0:
            return cfg[key]
    return None


def http_client(spec: RemoteSpec, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """An httpx client for `spec`: the key from the environment variable `spec.api_key_env`, TLS
    verified against the system store or `spec.ca_bundle`, proxies from the environment."""
    headers = {}
    if spec.api_key_env:
        key = os.environ.get(spec.api_key_env)
        if not key:
            raise EngineError(f"the environment variable {spec.api_key_env} (option 'apiKeyEnv') is not set or "
                              "empty: set it to the server's API key in the environment that starts the editor",
                              "auth")
        headers["Authorization"] = f"Bearer {key}"
    verify: bool | ssl.SSLContext = True  # httpx's default: certifi, or SSL_CERT_FILE / SSL_CERT_DIR
    if spec.ca_bundle:
        bundle = Path(spec.ca_bundle).expanduser()
        try:
            verify = ssl.create_default_context(cafile=str(bundle))
        except (OSError, ssl.SSLError) as e:
            raise EngineError(f"{bundle}: not a readable CA bundle file (option 'caBundle': {e})", "tls") from None
    return httpx.Client(base_url=spec.endpoint, headers=headers, transport=transport, verify=verify,
                        trust_env=True, timeout=httpx.Timeout(DEFAULT_READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))


class RemoteEngine:
    """The EngineClient machinery of a remote engine: each job on a thread of its own, its open stream
    registered so a cancel (or shutdown) closes it. Subclasses give `_load(spec)` and `_generate(job)`."""

    name = "remote"

    def __init__(self, spec: RemoteSpec, transport: httpx.BaseTransport | None = None) -> None:
        self.spec = spec
        self.endpoint = spec.endpoint.rstrip("/")
        self._transport = transport
        self._http_client: httpx.Client | None = None
        self.model_generation = 0
        self.decode = "remote"
        self._streams: dict[int, httpx.Response] = {}  # id(job) -> its open response (closed by cancel)
        self._lock = threading.Lock()
        self._closed = False
        self.last_timings: dict = {}  # the engine's own figures for the last finished job

    @property
    def _http(self) -> httpx.Client:
        if self._http_client is None:  # built on first use: a missing key fails the load, not the server
            self._http_client = http_client(replace(self.spec, endpoint=self.endpoint), self._transport)
        return self._http_client

    # -- EngineClient
    def load(self, spec) -> Future:
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
        done: Future = Future()
        done.set_result(None)
        return done

    def snapshot(self) -> dict:
        return {"kvCacheBytes": 0, "kvSessions": 0, "engine": self.name, "engineTimings": dict(self.last_timings)}

    def shutdown(self, timeout: float = 2.0) -> None:
        self._closed = True
        with self._lock:
            streams = list(self._streams.values())
        for response in streams:
            _close_quietly(response)
        if self._http_client is not None:
            self._http_client.close()

    # -- helpers for subclasses
    def _start(self, fn: Callable, arg) -> Future:
        fut: Future = Future()
        if self._closed:
            fut.set_exception(EngineError(f"the {self.name} client has shut down", "closed"))
            return fut

        def run():
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn(arg))
            except BaseException as e:  # noqa: BLE001 - a job's failure is its future's
                fut.set_exception(e)

        threading.Thread(target=run, name=f"infill-{self.name}", daemon=True).start()
        return fut

    @staticmethod
    def _interrupted(job: GenerationJob, deadline: float | None) -> str | None:
        """Why a stream must stop now: "cancelled" (a newer keystroke, an edit), "time" (the request's
        time limit), or None to read on."""
        if job.cancel.is_set():
            return "cancelled"
        if deadline is not None and time.monotonic() > deadline:
            return "time"
        return None

    @staticmethod
    def _ended_early(job: GenerationJob, url: str) -> str:
        """A stream that ended before its last event: "cancelled" if that was us, else a "reset" error."""
        if job.cancel.is_set():
            return "cancelled"
        raise EngineError(f"{url}: the stream ended before the answer did", "reset")

    def _get_json(self, path: str) -> dict:
        url = f"{self.endpoint}{path}"
        try:
            response = self._http.get(path)
        except httpx.HTTPError as e:
            raise _transport_error(self, url, e) from None
        if response.status_code >= 400:
            raise http_error(url, response)
        return parse_json(url, response.text)

    @contextmanager
    def _events(self, job: GenerationJob, path: str, body: dict, read_timeout_s: float | None) -> Iterator[Iterator[dict]]:
        """POST `body` to `path` as a stream; yields an iterator of the SSE events' JSON objects (an
        OpenAI `[DONE]` ends it). The response is registered for `cancel`; a read that waits longer
        than `read_timeout_s` (the first byte included) is a "timeout" failure. Transport failures
        after a cancel are not errors: the caller sees the iterator end and checks `job.cancel`."""
        url = f"{self.endpoint}{path}"
        timeout = httpx.Timeout(read_timeout_s or DEFAULT_READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        yielded = False
        try:
            with self._http.stream("POST", path, json=body, timeout=timeout) as response:
                with self._lock:
                    self._streams[id(job)] = response
                try:
                    if response.status_code >= 400:
                        response.read()
                        raise http_error(url, response)
                    yielded = True
                    yield _sse_objects(url, response, job)
                finally:
                    with self._lock:
                        self._streams.pop(id(job), None)
        except EngineError:
            raise
        except httpx.HTTPError as e:
            if not job.cancel.is_set():
                raise _transport_error(self, url, e) from None
            if not yielded:  # cancelled while connecting: an empty stream
                yield iter(())


def _sse_objects(url: str, response: httpx.Response, job: GenerationJob) -> Iterator[dict]:
    try:
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                return
            yield parse_json(url, payload)
    except httpx.HTTPError:
        if job.cancel.is_set():
            return
        raise


def _transport_error(engine: RemoteEngine, url: str, e: httpx.HTTPError) -> EngineError:
    if isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout)):
        if "CERTIFICATE_VERIFY_FAILED" in str(e) or "SSL" in type(e).__name__:
            return EngineError(f"{engine.endpoint}: the TLS certificate could not be verified ({_reason(e)}); "
                               "set 'caBundle' to your organisation's CA file", "tls")
        return EngineError(f"cannot reach the {engine.name} server at {engine.endpoint} ({_reason(e)})", "unreachable")
    if isinstance(e, (httpx.ReadTimeout, httpx.PoolTimeout, httpx.WriteTimeout)):
        return EngineError(f"{url}: no answer within the request timeout ({_reason(e)})", "timeout")
    if isinstance(e, (httpx.ReadError, httpx.RemoteProtocolError, httpx.StreamClosed)):
        return EngineError(f"{url}: connection lost mid-answer ({_reason(e)})", "reset")
    return EngineError(f"{url}: {_reason(e)}", "unreachable")


def parse_json(url: str, text: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError:
        raise EngineError(f"{url}: malformed JSON in the answer ({text.strip()[:80]!r})", "malformed") from None
    if not isinstance(data, dict):
        raise EngineError(f"{url}: expected a JSON object, got {type(data).__name__}", "malformed")
    return data


def http_error(url: str, response: httpx.Response) -> EngineError:
    code = response.status_code
    try:
        detail = response.json()
        detail = detail.get("error", detail.get("message", detail)) if isinstance(detail, dict) else detail
        detail = detail.get("message", detail) if isinstance(detail, dict) else detail
    except Exception:  # noqa: BLE001
        detail = response.text
    hint = {401: " (the API key is missing or wrong: see 'apiKeyEnv')", 403: " (the API key is not allowed)",
            404: " (no such endpoint or model)", 503: " (the server is still loading its model)"}.get(code, "")
    kind = "auth" if code in (401, 403) else "model" if code == 404 else f"http {code // 100}xx"
    return EngineError(f"{url} answered HTTP {code}{hint}: {str(detail)[:200]}", kind)


def _reason(e: Exception) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _close_quietly(response: httpx.Response) -> None:
    try:
        response.close()
    except Exception:  # noqa: BLE001 - closing from another thread may race the reader; it stops either way
        pass
