"""The model's lifecycle as the server sees it: loads in the background (reported with
window/workDoneProgress), ready, or failed with one clear message until the configuration changes.

The engine (inference.api.EngineClient, `server.worker`) answers a load with a ModelInfo; the server
keeps that and a PromptBuilder made from it, never the model itself."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from lsprotocol import types

from inference.api import ModelError, ModelInfo, ModelSpec
from lsp_server import start_up_gc
from lsp_server.config import Config
from lsp_server.prompt import PromptBuilder

log = logging.getLogger(__name__)

LOAD_TIMEOUT_S = 900.0  # a large model from a slow disk; the wait is bounded all the same
PROGRESS_CREATE_TIMEOUT_S = 2.0
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)  # a remote engine that is down at load: tried again, backing off


class ModelState:
    def __init__(self) -> None:
        self.status = "unloaded"  # "unloaded" | "loading" | "ready" | "failed"
        self.key: tuple | None = None
        self.info: ModelInfo | None = None
        self.builder: PromptBuilder | None = None
        self.error: str | None = None
        self.generation = 0  # server-side: bumped by every (re)load
        self.worker_generation = 0
        self.source_label = ""
        self.task: asyncio.Task | None = None
        self.load_retries = 0  # failed loads in a row of a remote engine that may come back

    @property
    def ready(self) -> bool:
        return self.status == "ready" and self.builder is not None

    def to_json(self) -> dict:
        return {"status": self.status, "source": self.source_label, "error": self.error,
                "family": self.info.family if self.info else None,
                "maxContext": self.info.max_context if self.info else None,
                "dtype": self.info.dtype if self.info else None,
                "layout": self.builder.layout if self.builder else None}


def describe_source(source: str | None) -> str:
    return repr(source) if source else "the default model (inference/default_model)"


async def load(server, config: Config, force: bool = False) -> None:
    """(Re)load the model if the options it depends on changed."""
    try:
        await _load(server, config, force)
    finally:
        start_up_gc.collect_all_again()


async def _load(server, config: Config, force: bool) -> None:
    state: ModelState = server.model
    key = config.model_key()
    if key == state.key and not force:
        return
    if key != state.key:
        state.load_retries = 0
    state.key = key
    server.use_engine(config)
    state.generation += 1
    generation = state.generation
    state.status, state.info, state.builder, state.error = "loading", None, None, None
    state.source_label = config.model or "(default)"
    server.forget_all_suggestions()
    where = describe_source(config.model)
    spec = ModelSpec(config.model, config.device, config.dtype, config.kv_budget_mb * 2**20, config.prefill_dtype)
    token = f"infill-ls/load/{generation}"
    progress = await _begin_progress(server, token, f"loading {where}")
    engine = (f"device {config.device}, dtype {config.dtype}" if config.backend == "local"
              else f"served by {config.backend} at {config.endpoint}")
    server.client_log.log("info", f"loading model {where} ({engine})")
    try:
        info = await asyncio.wait_for(asyncio.wrap_future(server.worker.load(spec)), LOAD_TIMEOUT_S)
        info = with_fim_format(info, config.fim_format)
    except asyncio.CancelledError:
        raise
    except BaseException as e:  # noqa: BLE001 - any failure is shown, the server stays up
        if generation == state.generation and getattr(e, "transient", False):
            # a remote engine down or restarting: one message per kind, and try again, backing off
            state.status, state.error = "failed", str(e)
            delay = RETRY_DELAYS_S[min(state.load_retries, len(RETRY_DELAYS_S) - 1)]
            state.load_retries += 1
            server.engine_failed(e)
            server.client_log.log("info", f"loading {where} again in {delay:.0f} s")
            server.retry_model_load(delay, generation)
        elif generation == state.generation:
            reason = str(e) if isinstance(e, ModelError) else f"{type(e).__name__}: {e}"
            if isinstance(e, asyncio.TimeoutError):
                reason = f"still not loaded after {LOAD_TIMEOUT_S:.0f} s"
            state.status, state.error = "failed", reason
            what = "the model" if config.model and config.model in reason else f"the model {where}"
            message = (f"infill-ls: could not load {what}: {reason}. Completions are off "
                       "until the 'model' option is fixed.")
            server.window_show_message(types.ShowMessageParams(type=types.MessageType.Error, message=message))
            server.client_log.log("error", message)
        _end_progress(server, progress, token, "failed")
        return
    builder = await asyncio.to_thread(_ready_builder, info)
    if generation != state.generation:
        _end_progress(server, progress, token, "superseded")
        return
    state.info = info
    state.builder = builder
    state.worker_generation = server.worker.model_generation
    state.status = "ready"
    state.load_retries = 0
    server.engine_answered()
    server.client_log.log("info", f"model ready: {where}, family {info.family}, prompt layout "
                                  f"{state.builder.layout}, context {info.max_context} tokens, "
                                  f"device {info.device}, dtype {info.dtype}")
    _end_progress(server, progress, token, "ready")


def with_fim_format(info: ModelInfo, name: str) -> ModelInfo:
    """`info` with the FIM format the user named (option fimFormat; "auto": the detected one).
    A tokenizer without that format's tokens is a ModelError naming the token."""
    if name == "auto":
        return info
    from inference.api import fim_format_named

    try:
        return dataclasses.replace(info, fim=fim_format_named(name, info.tokenizer()))
    except ValueError as e:
        raise ModelError(f"option 'fimFormat': {e}") from None


def _ready_builder(info: ModelInfo) -> PromptBuilder:
    """A prompt builder with its token tables made (tens of ms for a large vocabulary: not on the loop)."""
    builder = PromptBuilder(info)
    builder.prepare_healing()
    return builder


async def _begin_progress(server, token: str, message: str) -> bool:
    caps = server.client_capabilities
    window = getattr(caps, "window", None) if caps else None
    if not (window and window.work_done_progress):
        return False
    try:
        await asyncio.wait_for(server.work_done_progress.create_async(token), PROGRESS_CREATE_TIMEOUT_S)
        server.work_done_progress.begin(token, types.WorkDoneProgressBegin(
            title="infill-ls", message=message, cancellable=False))
        return True
    except Exception:  # noqa: BLE001 - progress is a courtesy; the load goes on without it
        return False


def _end_progress(server, started: bool, token: str, message: str) -> None:
    if started:
        try:
            server.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
        except Exception:  # noqa: BLE001
            pass
