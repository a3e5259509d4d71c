"""`infill/prefetch`: a notification a client sends when the cursor comes to rest at a new place
(a jump, a click, a switch to another document) without an edit.

The server then runs the completion pipeline's stages for that place in the background
(lsp_server.completion.warm), at the lowest
priority (lsp_server.scheduler: only when no request runs, one at a time, cancelled by any request
or by an edit of the document). The long prefill of a new place (seconds for a big file on a CPU)
then happens while the user reads, and is kept in the document's KV cache: the first keystroke
there prefills a few tokens instead of the whole prompt. Its suggestion is kept for typing through.
llama.vim warms its cache the same way.

Params: like TextDocumentPositionParams, `{"textDocument": {"uri": ...}, "position": {"line": L,
"character": C}}`, the position in the negotiated encoding. A malformed notification is logged and
dropped; the server option `prefetch: false` turns the feature off.
"""

from __future__ import annotations

from typing import Any

from lsp_server import completion

METHOD = "infill/prefetch"


def parse_params(params: Any) -> tuple[str, int, int] | str:
    """(uri, line, character), or a message saying what is wrong."""
    def field(obj: Any, name: str) -> Any:
        if isinstance(obj, dict):
            return obj.get(name)
        return getattr(obj, name, None)

    doc, pos = field(params, "textDocument"), field(params, "position")
    uri = field(doc, "uri")
    line, character = field(pos, "line"), field(pos, "character")
    if not isinstance(uri, str) or not uri:
        return "params.textDocument.uri must be a string"
    for name, value in (("line", line), ("character", character)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"params.position.{name} must be a whole number >= 0"
    return uri, line, character


async def prefetch(server, params: Any) -> None:
    if not server.config.prefetch:
        return
    parsed = parse_params(params)
    if isinstance(parsed, str):
        server.stats.count("invalid")
        server.client_log.log("warning", f"{METHOD} dropped: {parsed}")
        return
    uri, line, character = parsed
    try:
        await completion.warm(server, completion.Request(uri, line, character))
    except Exception as e:  # noqa: BLE001 - a background run never takes the server down
        server.stats.count("errors")
        server.client_log.log("error", f"{METHOD} failed: {type(e).__name__}: {e}")
