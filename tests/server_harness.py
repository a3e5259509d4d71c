"""Helpers for the end-to-end server tests: start the real `python -m lsp_server.serve` process
with pytest-lsp's client, keep a local copy of each document, type into it with incremental edits."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

from lsprotocol import types as t
from pytest_lsp.client import make_test_lsp_client

from lsp_server.positions import index_to_column

SERVER_COMMAND = [sys.executable, "-m", "lsp_server.serve"]


def capabilities(encodings=None) -> t.ClientCapabilities:
    return t.ClientCapabilities(
        window=t.WindowClientCapabilities(work_done_progress=True),
        general=t.GeneralClientCapabilities(position_encodings=encodings or [t.PositionEncodingKind.Utf16]),
        text_document=t.TextDocumentClientCapabilities(
            inline_completion=t.InlineCompletionClientCapabilities(),
            completion=t.CompletionClientCapabilities(completion_item=t.ClientCompletionItemOptions(
                documentation_format=[t.MarkupKind.PlainText, t.MarkupKind.Markdown]))),
    )


@contextlib.asynccontextmanager
async def running_server(options: dict | None, encodings=None):
    client = make_test_lsp_client()
    await client.start_io(*SERVER_COMMAND)
    try:
        result = await client.initialize_session(t.InitializeParams(
            capabilities=capabilities(encodings), initialization_options=options))
        client.init_result = result
        yield client
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown_session(), 5)
        await client.stop()


async def stats(client) -> dict:
    return await client.workspace_execute_command_async(t.ExecuteCommandParams(command="infill.stats"))


async def wait_model(client, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = await stats(client)
        if s["model"]["status"] in ("ready", "failed"):
            return s
        await asyncio.sleep(0.05)
    raise AssertionError("model neither ready nor failed in time")


async def wait_for(predicate, client, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        s = await stats(client)
        if predicate(s) or time.monotonic() > deadline:
            return s
        await asyncio.sleep(0.05)


class Doc:
    """The client's copy of a document; edits are sent as incremental didChange notifications."""

    def __init__(self, client, uri: str, text: str, language: str = "python", encoding: str = "utf-16"):
        self.client, self.uri, self.text, self.version, self.encoding = client, uri, text, 1, encoding
        client.text_document_did_open(t.DidOpenTextDocumentParams(t.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)))

    def position(self, offset: int) -> t.Position:
        before = self.text[:offset]
        line = before.count("\n")
        line_text = before[before.rfind("\n") + 1:]
        return t.Position(line, index_to_column(line_text, len(line_text), self.encoding))

    def offset_of(self, marker: str) -> int:
        return self.text.index(marker)

    def insert(self, offset: int, text: str) -> None:
        pos = self.position(offset)
        self.text = self.text[:offset] + text + self.text[offset:]
        self.version += 1
        self.client.text_document_did_change(t.DidChangeTextDocumentParams(
            t.VersionedTextDocumentIdentifier(version=self.version, uri=self.uri),
            [t.TextDocumentContentChangePartial(range=t.Range(pos, pos), text=text)]))

    def close(self) -> None:
        self.client.text_document_did_close(t.DidCloseTextDocumentParams(t.TextDocumentIdentifier(self.uri)))

    async def inline(self, offset: int, invoked: bool = False) -> list[t.InlineCompletionItem]:
        kind = t.InlineCompletionTriggerKind.Invoked if invoked else t.InlineCompletionTriggerKind.Automatic
        result = await self.client.text_document_inline_completion_async(t.InlineCompletionParams(
            text_document=t.TextDocumentIdentifier(self.uri), position=self.position(offset),
            context=t.InlineCompletionContext(trigger_kind=kind)))
        return list(result.items if isinstance(result, t.InlineCompletionList) else (result or []))

    async def complete(self, offset: int) -> list[t.CompletionItem]:
        result = await self.client.text_document_completion_async(t.CompletionParams(
            text_document=t.TextDocumentIdentifier(self.uri), position=self.position(offset)))
        return list(result.items if isinstance(result, t.CompletionList) else (result or []))


def favour_printable_tokens(folder, forbid: str = "", suppress_specials: bool = False) -> None:
    """Make a tiny random checkpoint suggest printable code: zero the output rows (and, where there
    is one, push down the output bias) of tokens whose text is not printable on its own (stray UTF-8
    bytes, control characters), so greedy decoding picks readable tokens. Special tokens are kept.
    Tokens containing any character of `forbid` are pushed down too (e.g. "\n": never a line break)."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file, save_file
    from tokenizers import Tokenizer

    folder = Path(folder)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    specials = {t.content for t in tok.get_added_tokens_decoder().values()}
    bad = []
    for i in range(tok.get_vocab_size()):
        piece = tok.id_to_token(i)
        if piece in specials:
            if suppress_specials:
                bad.append(i)
            continue
        text = tok.decode([i])
        if ("\ufffd" in text or any(ord(c) < 32 and c not in "\n\t" for c in text) or not text
                or any(c in text for c in forbid)):
            bad.append(i)
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    key = "lm_head.weight" if "lm_head.weight" in tensors else next(
        k for k in tensors if k.endswith("wte.weight") or k.endswith("embed_tokens.weight"))
    tensors[key][bad] = 0
    if "lm_head.bias" in tensors:
        tensors["lm_head.bias"][bad] = -30.0
    save_file(tensors, str(path), metadata={"format": "pt"})
    json.loads((folder / "config.json").read_text())  # still a valid checkpoint folder


async def suggest_then_lose_the_engine(lsp, text: str, after: str, stop_engine, backend: str, url: str):
    """A suggestion at the end of `after` in `text`, then the remote engine stopped (`stop_engine()`):
    two typed keys get empty answers and the user one message naming `url`. Returns (doc, cursor)."""
    assert (await wait_model(lsp, 60))["model"]["status"] == "ready"
    doc = Doc(lsp, "file:///k.py", text)
    cursor = doc.offset_of(after) + len(after)
    assert await doc.inline(cursor)
    stop_engine()
    for ch in "xy":  # keys off the suggestion shown (typing through it would ask no engine)
        doc.insert(cursor, ch)
        cursor += 1
        assert await doc.inline(cursor) == []
    await asyncio.sleep(0.2)  # the server's message is on its way before its answer; let it land
    messages = [m.message for m in lsp.messages if f"{backend} engine failed" in m.message]
    assert len(messages) == 1 and url in messages[0], messages
    return doc, cursor
