"""The language server: state on an InfillServer (a pygls LanguageServer) and handler registration.

The server keeps its own copy of each document (lsp_server.documents) so positions are converted
exactly once, in the negotiated encoding; the pipeline lives in lsp_server.completion.
"""

from __future__ import annotations

import asyncio
import gc
import json
import itertools
import logging

import cattrs
from lsprotocol import types
from pygls.capabilities import ServerCapabilitiesBuilder
from pygls.exceptions import JsonRpcInternalError
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, lsp_method
from pygls.protocol.json_rpc import JsonRPCNotification, JsonRPCRequestMessage

from inference.api import EngineClient, RemoteSpec, in_process_engine, remote_engine
from lsp_server import completion, model_state, prefetch
from lsp_server.config import DEFAULTS, Config, parse_config, to_wire
from lsp_server.documents import DocumentStore
from lsp_server.items import ACCEPT_COMMAND, STATS_COMMAND, completion_items, inline_items
from lsp_server.logs import ClientLog
from lsp_server.positions import SUPPORTED, UTF16
from lsp_server.reuse import ResultCache, TypingThrough
from lsp_server.scheduler import RequestScheduler
from lsp_server.stats import Stats

log = logging.getLogger(__name__)

COMPLETION_TRIGGER_CHARACTERS = [".", "(", "[", "{", ",", ":", "=", " "]


class _Dropped:
    """A message that was answered (or dropped) while being parsed; handle_message skips it."""

    jsonrpc = None


class InfillProtocol(LanguageServerProtocol):
    """Document sync goes to the server's own DocumentStore (not pygls' workspace copy).

    Per the LSP spec, a request whose params do not fit its method is answered with InvalidParams
    (pygls would only log it and leave the client waiting), and requests before `initialize` are
    answered with ServerNotInitialized; notifications then are dropped (except `exit`). Requests
    after `shutdown` are answered with InvalidRequest (pygls would drop them unanswered)."""

    _server: "InfillServer"
    _initialize_seen = False

    def structure_message(self, data):
        method = data.get("method") if "jsonrpc" in data else None
        if not isinstance(method, str) or "error" in data:
            return super().structure_message(data)
        msg_id = data.get("id")
        fallback = JsonRPCRequestMessage if "id" in data else JsonRPCNotification
        try:
            return self._converter.structure(data, self.get_message_type(method) or fallback)
        except Exception as e:  # noqa: BLE001 - cattrs errors of any shape
            where = "; ".join(cattrs.transform_error(e)) if isinstance(e, cattrs.BaseValidationError) else str(e)
            log.warning("invalid params for %s (%s): %s", method, "request" if "id" in data else "notification",
                        where[:300])
            if "id" in data and isinstance(msg_id, (int, str)):
                self._send_response(msg_id, error=types.ResponseError(
                    code=types.ErrorCodes.InvalidParams, message=f"invalid params for {method}: {where[:300]}"))
            return _Dropped()

    def handle_message(self, message):
        if isinstance(message, _Dropped):
            return None
        method = getattr(message, "method", None)
        if method == types.INITIALIZE:
            self._initialize_seen = True
        elif not self._initialize_seen and method is not None and method != types.EXIT:
            if getattr(message, "id", None) is not None:
                self._send_response(message.id, error=types.ResponseError(
                    code=types.ErrorCodes.ServerNotInitialized, message=f"{method} before initialize"))
            else:
                log.warning("dropped %s: it came before initialize", method)
            return None
        elif self._shutdown and method not in (None, types.EXIT) and getattr(message, "id", None) is not None:
            self._send_response(message.id, error=types.ResponseError(
                code=types.ErrorCodes.InvalidRequest, message=f"{method} after shutdown"))
            return None
        return super().handle_message(message)

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams):
        td = params.text_document
        self._server.docs.open(td.uri, td.text, td.language_id, td.version)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        self._server.did_change(params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams):
        self._server.did_close(params.text_document.uri)


class InfillServer(LanguageServer):
    def __init__(self, worker: EngineClient | None = None) -> None:
        super().__init__("infill-ls", "0.1.0", protocol_cls=InfillProtocol,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.config: Config = DEFAULTS
        self.exit_code = 0  # what `infill-ls serve` returns; 1 after `exit` without `shutdown`
        self.docs = DocumentStore()
        self.encoding = UTF16
        # the engine is made at `initialize`, once the options say which backend: a server for a
        # remote engine never imports torch
        self.worker: EngineClient | None = worker
        self._engine_key: tuple | None = ("local",) if worker is not None else None  # Config.engine_key() of it
        self.engine_failures: set[str] = set()  # kinds of engine failure already shown to the user
        self.model = model_state.ModelState()
        self.scheduler = RequestScheduler(DEFAULTS.rate_limit, DEFAULTS.debounce_ms)
        self.typing = TypingThrough()
        self.cache = ResultCache()
        self.stats = Stats()
        self.client_log = ClientLog(self)
        self._ids = itertools.count(1)
        self._pending_warnings: list[str] = []
        self._background: set[asyncio.Task] = set()

    def next_request_id(self) -> int:
        return next(self._ids)

    def report_server_error(self, error: Exception, source) -> None:
        """pygls reports failures outside a request's answer (a bad notification, unparsable JSON)
        here; log them instead of popping an error in the editor for each."""
        log.warning("protocol error (%s): %s", getattr(source, "__name__", source), error)
        if source is JsonRpcInternalError:  # sending failed: a message to the client would fail the same way
            return
        if isinstance(error, json.JSONDecodeError):  # JSON-RPC: a body that is not JSON gets -32700, id null
            # (a dict: pygls' message types drop an id of None, and JSON-RPC wants it there as null)
            self.protocol._send_data({"jsonrpc": "2.0", "id": None, "error": {
                "code": int(types.ErrorCodes.ParseError), "message": f"parse error: {error}"}})
        self.client_log.log("warning", f"protocol error: {type(error).__name__}: {error}")

    # -- configuration
    def apply_options(self, raw, initial: bool = False) -> list[str]:
        config, warnings, ignored = parse_config(raw, self.config)
        self.config = config
        self.scheduler.configure(config.rate_limit, config.debounce_ms)
        problem = self.client_log.configure(config.log_level, config.log_file)
        if problem:
            warnings.append(problem)
        if ignored and not initial:
            self.client_log.log("debug", "options ignored (unknown): " + ", ".join(sorted(ignored)))
        return warnings

    def warn(self, message: str) -> None:
        self.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=message))
        self.client_log.log("warning", message)

    def use_engine(self, config: Config) -> None:
        """The engine of the configured backend: a change of backend or endpoint replaces it."""
        key = config.engine_key()
        if self.worker is not None and key == self._engine_key:
            return
        old = self.worker
        self.worker = in_process_engine() if config.backend == "local" else remote_engine(RemoteSpec(
            config.backend, config.endpoint, config.served_model, config.api_key_env, config.ca_bundle))
        self._engine_key = key
        self.engine_failures.clear()
        if old is not None:
            old.shutdown(timeout=0.5)

    def engine_failed(self, error: Exception) -> None:
        """A remote engine's failure: one message per kind of failure until it answers again."""
        kind = getattr(error, "kind", None)
        if kind is None or kind in self.engine_failures:
            return
        self.engine_failures.add(kind)
        self.warn(f"infill-ls: the {self.config.backend} engine failed: {error}. No suggestions until it "
                  "answers again (infill-ls keeps trying).")

    def engine_answered(self) -> None:
        if self.engine_failures:
            self.engine_failures.clear()
            self.client_log.log("info", f"the {self.config.backend} engine answers again")

    def retry_model_load(self, delay_s: float, generation: int) -> None:
        """Load again after `delay_s` unless another load (a configuration change) came first."""
        async def later():
            await asyncio.sleep(delay_s)
            if self.model.generation == generation:
                await model_state.load(self, self.config, force=True)

        task = asyncio.get_running_loop().create_task(later())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def start_model_load(self, force: bool = False) -> None:
        task = asyncio.get_running_loop().create_task(model_state.load(self, self.config, force))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- documents
    def did_change(self, params: types.DidChangeTextDocumentParams) -> None:
        # the document changed: whatever the model is computing for it is stale
        self.scheduler.cancel_document(params.text_document.uri)
        doc = self.docs.get(params.text_document.uri)
        if doc is None:
            self.client_log.log("debug", f"change for a document that is not open: {params.text_document.uri}")
            return
        for change in params.content_changes:
            rng = getattr(change, "range", None)
            if rng is None:
                doc.apply_change(change.text)
            else:
                doc.apply_change(change.text, ((rng.start.line, rng.start.character),
                                               (rng.end.line, rng.end.character)), self.encoding)
        doc.version = params.text_document.version

    def did_close(self, uri: str) -> None:
        self.docs.close(uri)
        self.scheduler.cancel_document(uri)
        self.typing.forget(uri)
        if self.worker is not None:
            self.worker.close_session(uri)  # frees the document's KV cache

    def forget_all_suggestions(self) -> None:
        self.scheduler.cancel_all()
        self.typing = TypingThrough()
        self.cache.clear()

    def stats_json(self) -> dict:
        out = self.stats.to_json()
        out.update(self.worker.snapshot() if self.worker is not None else {"kvCacheBytes": 0, "kvSessions": 0})
        out["model"] = self.model.to_json()
        # what runs a decode step: "eager", "compiling" (eager until the compiled ops are swapped in), "compiled"
        out["model"]["decode"] = getattr(self.worker, "decode", None) if self.model.ready else None
        out["openDocuments"] = len(self.docs)
        out["positionEncoding"] = self.encoding
        # young objects only during start-up, then as usual with start-up's objects frozen (start_up_gc)
        out["garbageCollector"] = {"thresholds": list(gc.get_threshold()), "frozenObjects": gc.get_freeze_count()}
        return out


def build_server(worker: EngineClient | None = None) -> InfillServer:
    server = InfillServer(worker)
    _lifecycle_features(server)
    _completion_features(server)
    _commands(server)
    return server


def _lifecycle_features(server: InfillServer) -> None:
    """initialize, initialized, configuration changes, shutdown and exit."""
    @server.feature(types.INITIALIZE)
    def initialize(ls: InfillServer, params: types.InitializeParams):
        encoding = ServerCapabilitiesBuilder.choose_position_encoding(params.capabilities)
        ls.encoding = str(encoding) if str(encoding) in SUPPORTED else UTF16
        ls._pending_warnings = ls.apply_options(params.initialization_options, initial=True)
        ls.use_engine(ls.config)  # the local engine starts importing torch now, beside the handshake

    @server.feature(types.INITIALIZED)
    def initialized(ls: InfillServer, params: types.InitializedParams):
        for message in ls._pending_warnings:
            ls.warn(message)
        ls._pending_warnings = []
        ls.client_log.log("info", f"infill-ls ready (position encoding {ls.encoding})")
        ls.start_model_load()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: InfillServer, params: types.DidChangeConfigurationParams):
        for message in ls.apply_options(params.settings):
            ls.warn(message)
        ls.cache.clear()
        # a failed model is retried when its options change; a loaded one only when they differ
        force = ls.model.status == "failed" and ls.model.key != ls.config.model_key()
        ls.start_model_load(force)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: InfillServer, *args):
        ls.scheduler.cancel_all()

    @server.feature(types.EXIT)
    def exit_(ls: InfillServer, *args):
        ls.exit_code = 0 if ls.protocol._shutdown else 1  # the LSP spec: exit without shutdown -> 1
        ls.scheduler.cancel_all()
        if ls.worker is not None:
            ls.worker.shutdown(timeout=1.0)


def _completion_features(server: InfillServer) -> None:
    """inlineCompletion, completion and the infill/prefetch notification."""
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: InfillServer, params: types.InlineCompletionParams):
        ctx = params.context
        selected = ctx.selected_completion_info if ctx else None
        req = completion.Request(
            params.text_document.uri, params.position.line, params.position.character,
            invoked=bool(ctx and ctx.trigger_kind == types.InlineCompletionTriggerKind.Invoked),
            selected=None if selected is None else (
                selected.range.start.line, selected.range.start.character,
                selected.range.end.line, selected.range.end.character, selected.text))
        answer = await _answer(ls, req)
        if answer is None:
            return types.InlineCompletionList(items=[])
        return types.InlineCompletionList(items=inline_items(answer, params.position, ls.encoding, selected))

    @server.feature(types.TEXT_DOCUMENT_COMPLETION,
                    types.CompletionOptions(trigger_characters=COMPLETION_TRIGGER_CHARACTERS))
    async def text_document_completion(ls: InfillServer, params: types.CompletionParams):
        req = completion.Request(params.text_document.uri, params.position.line, params.position.character)
        answer = await _answer(ls, req)
        items = [] if answer is None else completion_items(answer, params.position, ls.encoding)
        return types.CompletionList(is_incomplete=True, items=items)

    @server.feature(prefetch.METHOD)
    async def prefetch_at(ls: InfillServer, params):
        await prefetch.prefetch(ls, params)


def _commands(server: InfillServer) -> None:
    """workspace/executeCommand: infill.accept and infill.stats."""
    @server.command(ACCEPT_COMMAND)
    def accept(ls: InfillServer, *args):
        ls.stats.count("accepted")
        ls.client_log.log("info", f"suggestion accepted {list(args)[:3]}")
        return None

    @server.command(STATS_COMMAND)
    def stats(ls: InfillServer, *args):
        out = ls.stats_json()
        out["config"] = to_wire(ls.config)
        return out


async def _answer(ls: InfillServer, req: completion.Request):
    try:
        return await completion.suggest(ls, req)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - never let a request take the server down
        ls.stats.count("errors")
        log.exception("completion failed")
        ls.client_log.log("error", f"completion failed: {type(e).__name__}: {e}")
        return None
