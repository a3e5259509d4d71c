"""The engine boundary: all that the editor side (lsp_server/) imports from inference/.

Token ids in, token ids out. The editor side gets a `ModelInfo` when a model is loaded (the
tokenizer as data it loads itself, the FIM format, BOS/EOS/stop ids, the context length, what was
loaded) and talks to an `EngineClient`: load, generate (tokens streamed to the job's `stop_check`),
prefill only (a prefetch warms a document's KV cache), cancel, close a document's session, stats.
The in-process implementation is inference.worker.InferenceWorker (one thread that owns the model);
another engine (a server in another process) implements the same protocol.

This module and inference.fim import no torch: the editor side never loads the weights' library.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Protocol

from .fim import FIM_FORMAT_NAMES, FimFormat, fim_format_named

__all__ = ["BACKENDS", "EngineClient", "FIM_FORMAT_NAMES", "FimFormat", "GenerationJob", "GenerationParams", "GenerationResult",
           "ModelError", "ModelInfo", "ModelSpec", "RemoteSpec", "fim_format_named", "in_process_engine",
           "remote_engine"]

BACKENDS = ("local", "vllm", "llama.cpp", "openai")  # local: the in-process engine; the others: servers


class ModelError(Exception):
    """A problem with the model the user pointed at (missing file, bad value...): a one-line message
    naming the file or value, shown to the user without a traceback."""


@dataclass(frozen=True)
class ModelSpec:
    """What to load: a folder or hub id (None: the shipped default) and where to run it."""
    source: str | None
    device: str = "cpu"
    dtype: str = "auto"
    kv_budget_bytes: int = 256 * 2**20
    prefill_dtype: str = "auto"  # or "model": a long prefill in the model's own dtype (see inference.acceleration)
    one_shot: bool = False  # a single completion (`infill-ls complete`): no compiled decode, no warm-up


@dataclass(frozen=True)
class RemoteSpec:
    """Where a remote engine is and how to talk to it (the key itself is never here: only the name of
    the environment variable that holds it)."""
    backend: str  # "vllm" | "llama.cpp" | "openai"
    endpoint: str  # base URL, e.g. http://127.0.0.1:8000
    served_model: str | None = None  # the model name the server knows; None: the first it lists
    api_key_env: str | None = None
    ca_bundle: str | None = None  # a PEM file of CAs to verify https with (else the system's)


@dataclass(frozen=True)
class ModelInfo:
    """What the editor side knows about a loaded model: plain data, no weights."""
    family: str
    tokenizer_json: str  # the tokenizers library's JSON: `tokenizer()` gives the editor side its own copy
    fim: FimFormat | None  # None: left to right only
    bos_ids: tuple[int, ...]  # put before every prompt (XGLM's </s>)
    eos_token_ids: tuple[int, ...]
    max_context: int
    device: str  # what was loaded: "cpu", "cuda:0"
    dtype: str  # "float32", "bfloat16", "float16"

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Ids that end a suggestion: EOS and the FIM format's stops."""
        return tuple(dict.fromkeys([*self.eos_token_ids, *(self.fim.stop_ids if self.fim else ())]))

    def tokenizer(self):
        """A tokenizer of the caller's own (a `tokenizers.Tokenizer`), special-token strings typed in a
        file encoded as text."""
        from tokenizers import Tokenizer

        tok = Tokenizer.from_str(self.tokenizer_json)
        tok.encode_special_tokens = True
        return tok


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 64  # 0: prefill only (warms the session's KV cache, generates nothing)
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()
    time_limit_s: float | None = None
    first_token_ids: tuple[int, ...] = ()  # when given, the first token is chosen among these (token healing)


@dataclass
class GenerationResult:
    token_ids: list[int]  # generated, stop token excluded
    text: str             # the engine's decode of them, cut before a stop string
    stop_reason: str      # "eos" | "stop_string" | "max_tokens" | "time" | "cancelled"
    prompt_tokens: int
    reused_tokens: int
    prefill_tokens: int
    prefill_ms: float
    decode_ms: float


@dataclass
class GenerationJob:
    prompt_ids: list[int]
    params: GenerationParams
    session: str | None = None  # a document's KV session; None: a fresh cache, not kept
    cancel: threading.Event = field(default_factory=threading.Event)
    # Called (on the engine's thread) with the ids generated so far after each token; True stops
    # generation early (the result then counts as complete, not cancelled).
    stop_check: Callable[[list[int]], bool] | None = None
    stopped_early: bool = False
    model_generation: int = 0  # the load this job was built for (0: any); a later load skips it


class EngineClient(Protocol):
    """What the editor side calls; every call returns at once (a Future where there is an answer)."""
    model_generation: int  # bumped by every load

    def load(self, spec: ModelSpec) -> Future: ...  # -> ModelInfo; ModelError for a user error

    def generate(self, job: GenerationJob) -> Future: ...  # -> GenerationResult, None if skipped

    def prefill(self, job: GenerationJob) -> Future: ...  # generate with no decoding

    def cancel(self, job: GenerationJob) -> None: ...

    def close_session(self, session: str) -> Future: ...

    def snapshot(self) -> dict: ...  # stats: {"kvCacheBytes", "kvSessions"}, never waits

    def shutdown(self, timeout: float = 2.0) -> None: ...


def in_process_engine() -> EngineClient:
    """The engine on a thread of this process (imports torch when called, not before)."""
    from .worker import InferenceWorker

    return InferenceWorker()


def remote_engine(spec: RemoteSpec) -> EngineClient:
    """The client of an engine in another process (torch-free): llama.cpp's llama-server
    (`/completion`), vLLM or any OpenAI-compatible server (`/v1/completions`). Its failures are
    ModelErrors with a `kind` ("unreachable", "reset", "timeout", "auth", "model", "http 5xx",
    "malformed"...)."""
    if spec.backend == "llama.cpp":
        from .remote_llamacpp import LlamaServerClient

        return LlamaServerClient(spec)
    if spec.backend in ("vllm", "openai"):
        from .remote_openai import OpenAICompletionsClient

        return OpenAICompletionsClient(spec)
    raise ModelError(f"unknown backend {spec.backend!r} (use one of {', '.join(BACKENDS)})")
