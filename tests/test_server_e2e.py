"""End to end: the real server process (python -m lsp_server.serve) driven over stdio by pytest-lsp,
on tiny random checkpoints (StarCoder-like FIM and CodeGen-like left-to-right)."""

from __future__ import annotations

import asyncio
import re

import pytest
from lsprotocol import types as t
from pygls.exceptions import JsonRpcRequestCancelled

from tests.checkpoints import make_codegen, make_gpt_bigcode
from tests.server_harness import Doc, favour_printable_tokens, running_server, stats, wait_for, wait_model

PY_SOURCE = "def add(a, b):\n    \n\n\nprint(add(1, 2))\n"
FAST = {"maxNewTokensSingleLine": 8, "maxNewTokensMultiLine": 12}  # keep each model run short


def opts(**kw):
    return {**FAST, **kw}


@pytest.fixture(scope="module")
def starcoder(tmp_path_factory):
    folder = make_gpt_bigcode(tmp_path_factory.mktemp("ckpt") / "starcoder")
    favour_printable_tokens(folder)
    return str(folder)


@pytest.fixture(scope="module")
def starcoder_one_line(tmp_path_factory):
    """Never writes a line break or a special token: nothing ends its runs before the token limit."""
    # wider than the others so that a long run takes a while (about 1 ms a token or more)
    folder = make_gpt_bigcode(tmp_path_factory.mktemp("ckpt") / "starcoder_one_line", seed=1, n_layer=4,
                              n_embd=256, n_head=4, n_positions=1024)
    favour_printable_tokens(folder, forbid="\n\r", suppress_specials=True)
    return str(folder)


@pytest.fixture(scope="module")
def codegen(tmp_path_factory):
    folder = make_codegen(tmp_path_factory.mktemp("ckpt") / "codegen")
    favour_printable_tokens(folder)
    return str(folder)


def check_item(doc: Doc, offset: int, item: t.InlineCompletionItem) -> None:
    """An inline item starts at the cursor, stays on its line, and never repeats the rest of it."""
    pos = doc.position(offset)
    assert item.range.start == pos
    assert item.range.end.line == pos.line
    rest = doc.text[offset:].split("\n", 1)[0]
    if item.range.end == pos:  # insertion: must not end with the code that follows
        assert not (rest.strip() and item.insert_text.rstrip().endswith(rest.strip()))
    else:  # replaces the rest of the line
        assert item.range.end == doc.position(offset + len(rest))
    if rest.strip():
        assert "\n" not in item.insert_text  # mid-line: one line only
    assert item.insert_text.strip()
    assert item.command.command == "infill.accept"


async def test_typing_a_line_reuses_the_kv_cache_and_items_fit_the_suffix(starcoder):
    async with running_server(opts(model=starcoder, logLevel="info")) as client:
        assert client.init_result.capabilities.inline_completion_provider is not None
        assert client.init_result.capabilities.position_encoding == "utf-16"
        assert (await wait_model(client))["model"]["status"] == "ready"
        doc = Doc(client, "file:///w/add.py", PY_SOURCE)
        offset = doc.offset_of("    \n") + 4
        shown = 0
        for ch in "return a + b":
            doc.insert(offset, ch)
            offset += 1
            items = await doc.inline(offset)
            for item in items:
                check_item(doc, offset, item)
            shown += bool(items)
        s = await stats(client)
        assert s["requests"] == len("return a + b")
        assert s["modelRuns"] >= 1
        assert s["reusedTokens"]["total"] > 0  # later keystrokes reuse the document's KV state
        assert s["last"]["prompt_layout"] == "spm"
        # a keystroke prefills 1-3 tokens (README): the median run (the first one prefilled the whole prompt)
        assert s["modelRuns"] >= 5 and s["prefillTokens"]["median"] <= 3, s["prefillTokens"]
        assert s["last"]["reused_tokens"] > 0 and s["last"]["prefill_tokens"] <= 3, s["last"]
        timing_lines = [m.message for m in client.log_messages if "prefill_tokens=" in m.message]
        assert timing_lines and all(k in timing_lines[-1] for k in
                                    ("prompt_ms=", "reused_tokens=", "decode_ms=", "tokens="))
        assert "return" not in " ".join(m.message for m in client.log_messages)  # no text at info
        assert s["kvSessions"] == 1 and s["kvCacheBytes"] > 0

        assert shown > 0

        # mid-line, before code: one line, never repeating the ")" that follows
        mid = Doc(client, "file:///w/mid.py", "x = max(1, )\n")
        cursor = mid.offset_of(")")
        for item in await mid.inline(cursor):
            check_item(mid, cursor, item)

        # plain completion for clients without inline completion: an item with a textEdit from the word start
        plain = []
        for ch in " * a":
            doc.insert(offset, ch)
            offset += 1
            plain = await doc.complete(offset)
            if plain:
                break
        assert plain
        for item in plain:
            word = re.search(r"[A-Za-z0-9_]*$", doc.text[:offset]).group(0)  # identifier before the cursor
            assert item.text_edit.range.start == doc.position(offset - len(word))
            assert item.text_edit.range.end.line == doc.position(offset).line
            assert item.text_edit.new_text.startswith(word) and item.insert_text == item.text_edit.new_text
            assert item.command.command == "infill.accept"

        doc.close()
        mid.close()
        s = await wait_for(lambda s: s["kvSessions"] == 0, client)
        assert s["kvSessions"] == 0 and s["kvCacheBytes"] == 0  # didClose freed the KV sessions


async def test_typing_through_a_suggestion_is_answered_without_the_model(starcoder):
    async with running_server(opts(model=starcoder)) as client:
        await wait_model(client)
        doc = Doc(client, "file:///w/through.py", "")
        # find a spot where the random model suggests something of 2+ characters
        found = None
        for text in ["def f(x):\n    return ", "import os\n", "class A:\n    def __init__(self):\n        ",
                     "for i in range(10):\n    ", "x = 1\ny = ", "print("]:
            doc.insert(len(doc.text), text)
            items = await doc.inline(len(doc.text))
            if items and len(items[0].insert_text) >= 2:
                found = items[0].insert_text
                break
        assert found, "the random model never suggested anything"
        before = await stats(client)
        doc.insert(len(doc.text), found[0])
        items = await doc.inline(len(doc.text))
        after = await stats(client)
        assert items[0].insert_text == found[1:]
        assert after["served"].get("typingThrough", 0) == before["served"].get("typingThrough", 0) + 1
        assert after["modelRuns"] == before["modelRuns"]
        # asking again at the same spot: typing-through again (same shown suggestion)
        # then a repeated identical context after a round trip is served from the cache
        doc.insert(len(doc.text), "\u00a7")  # typed something else: the model runs
        await doc.inline(len(doc.text))
        runs = (await stats(client))["modelRuns"]
        await doc.inline(len(doc.text))
        s = await stats(client)
        assert s["modelRuns"] == runs and s["served"].get("cache", 0) >= 1


async def test_utf16_positions_with_emoji_and_cjk_before_the_cursor(starcoder):
    async with running_server(opts(model=starcoder, logLevel="trace")) as client:
        await wait_model(client)
        text = 's = "😀 漢字 😀"; t = \n'
        doc = Doc(client, "file:///w/u.py", text)
        cursor = text.index("t = ") + 4
        assert doc.position(cursor).character == cursor + 2  # two emoji: one extra UTF-16 unit each
        items = await doc.inline(cursor)
        for item in items:
            assert item.range.start == doc.position(cursor)
        prompts = [m.message for m in client.log_messages if "prompt=" in m.message]
        # the exact prefix reached the model (its last space healed: the model writes it, see PromptBuilder)
        assert prompts and '😀 漢字 😀"; t =\' heal=\' \'' in prompts[-1].split(" raw=")[0]
        # a position inside a surrogate pair, past the end of a line or file: empty, never an error
        inside = t.Position(0, text.index("😀") + 1)
        for pos in (inside, t.Position(0, 500), t.Position(40, 0)):
            result = await client.text_document_inline_completion_async(t.InlineCompletionParams(
                text_document=t.TextDocumentIdentifier(doc.uri), position=pos,
                context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Automatic)))
            assert list(result.items) == []
        unknown = Doc.__new__(Doc)
        unknown.client, unknown.uri, unknown.text, unknown.encoding = client, "file:///w/never-opened.py", "", "utf-16"
        assert await unknown.inline(0) == []
        assert (await stats(client))["invalidRequests"] == 4


async def test_utf8_is_negotiated_when_offered(starcoder):
    for encoding in ("utf-8",):  # (utf-32 conversions: tests/test_context_positions.py)
        async with running_server(opts(model=starcoder, logLevel="trace"), encodings=[encoding, "utf-16"]) as client:
            assert client.init_result.capabilities.position_encoding == encoding
            await wait_model(client)
            text = 's = "漢字😀"; t = \n'
            doc = Doc(client, "file:///w/u8.py", text, encoding=encoding)
            cursor = text.index("t = ") + 4
            await doc.inline(cursor)
            prompts = [m.message for m in client.log_messages if "prompt=" in m.message]
            head = prompts[-1].split(" raw=")[0] if prompts else ""
            assert 'ß' not in head and '漢字😀"; t =\' heal=\' \'' in head  # the trailing space is healed


async def test_cancelled_request_does_not_block_the_next_and_newer_cancels_older(starcoder):
    async with running_server(opts(model=starcoder, debounceMs=80)) as client:
        await wait_model(client)
        doc = Doc(client, "file:///w/c.py", PY_SOURCE)
        cursor = doc.offset_of("    \n") + 4
        params = t.InlineCompletionParams(
            text_document=t.TextDocumentIdentifier(doc.uri), position=doc.position(cursor),
            context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Automatic))
        # $/cancelRequest: the request ends (cancelled), the next one is answered
        pending = client.protocol.send_request_async(t.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="will-cancel")
        task = asyncio.ensure_future(pending)
        await asyncio.sleep(0.01)
        client.protocol.notify(t.CANCEL_REQUEST, t.CancelParams(id="will-cancel"))
        with pytest.raises(JsonRpcRequestCancelled):  # (no answer in 5 s would raise TimeoutError)
            await asyncio.wait_for(task, 5)
        nxt = await asyncio.wait_for(doc.inline(cursor), 5)
        for item in nxt:
            check_item(doc, cursor, item)
        s = await stats(client)
        assert s["cancelled"] == 1 and s["requests"] == 2
        assert s["modelRuns"] == 1  # the next request ran the model (the cancelled one never did)

        # a newer request for the same document supersedes the older one (it answers empty)
        doc.insert(cursor, "z")  # a context not seen before (not in the result cache)
        older = asyncio.ensure_future(doc.inline(cursor + 1))
        await asyncio.sleep(0.02)  # the older one is waiting in its debounce
        doc.insert(cursor + 1, "r")
        newer = await asyncio.wait_for(doc.inline(cursor + 2), 5)
        assert await asyncio.wait_for(older, 5) == []
        s = await stats(client)
        assert s["superseded"] == 1 and s["requests"] == 4
        assert s["modelRuns"] == 2  # the newer one ran the model, the older one did not
        for item in newer:
            check_item(doc, cursor + 2, item)


async def test_invoked_trigger_gives_distinct_candidates(starcoder):
    async with running_server(opts(model=starcoder, numCandidates=3, temperature=0.9)) as client:
        await wait_model(client)
        doc = Doc(client, "file:///w/inv.py", "def f(x):\n    return ")
        items = await doc.inline(len(doc.text), invoked=True)
        texts = [i.insert_text for i in items]
        assert 2 <= len(texts) == len(set(texts)) <= 3, texts
        assert (await stats(client))["modelRuns"] == 3
        doc.insert(len(doc.text), "x")  # a new context: not answered from the result cache
        automatic = await doc.inline(len(doc.text))
        assert (await stats(client))["modelRuns"] == 4  # Automatic: one run
        assert len(automatic) == 1, [i.insert_text for i in automatic]  # and one item


async def test_configuration_changes_and_invalid_values(starcoder, tmp_path):
    log_file = tmp_path / "infill.log"
    options = {"model": starcoder, "temperature": "hot", "maxNewTokensSingleLine": 0, "noSuchOption": 1,
               "maxNewTokensMultiLine": 12, "logFile": str(log_file)}
    async with running_server(options) as client:
        await wait_model(client)
        warnings = [m.message for m in client.messages if m.type == t.MessageType.Warning]
        assert any("'temperature'" in w and "default 0.0" in w for w in warnings)
        assert any("'maxNewTokensSingleLine'" in w and "default 32" in w for w in warnings)
        s = await stats(client)
        assert s["config"]["temperature"] == 0.0 and s["config"]["maxNewTokensSingleLine"] == 32

        client.workspace_did_change_configuration(t.DidChangeConfigurationParams(
            settings={"infill": {"maxNewTokensMultiLine": 3, "numCandidates": "many"}}))
        s = await wait_for(lambda s: s["config"]["maxNewTokensMultiLine"] == 3, client)
        assert s["config"]["maxNewTokensMultiLine"] == 3 and s["config"]["numCandidates"] == 3
        assert any("'numCandidates'" in m.message for m in client.messages)
        doc = Doc(client, "file:///w/cfg.py", "def f(x):\n")
        await doc.inline(len(doc.text))
        s = await stats(client)
        assert s["last"]["tokens"] <= 3
        assert s["model"]["status"] == "ready" and s["model"]["source"] == starcoder  # no reload
        logged = log_file.read_text()
        assert "prefill_tokens=" in logged and "def f" not in logged  # timings, never the text


async def test_missing_model_gives_one_message_and_empty_results_until_fixed(starcoder, codegen, tmp_path):
    missing = str(tmp_path / "no-such-model")
    async with running_server({"model": missing}) as client:
        s = await wait_model(client)
        assert s["model"]["status"] == "failed"
        errors = [m.message for m in client.messages if m.type == t.MessageType.Error]
        assert len(errors) == 1 and missing in errors[0] and "no such folder" in errors[0]
        doc = Doc(client, "file:///w/m.py", PY_SOURCE)
        assert await doc.inline(5) == []
        assert await doc.complete(5) == []
        assert (await stats(client))["notReady"] == 2  # other requests still work
        # fixing the option loads the model in the background
        client.workspace_did_change_configuration(t.DidChangeConfigurationParams(settings={"model": starcoder}))
        s = await wait_for(lambda s: s["model"]["status"] == "ready", client, timeout=30)
        assert s["model"]["status"] == "ready"
        assert len([m for m in client.messages if m.type == t.MessageType.Error]) == 1
        assert any(r[-1].kind == "end" for r in client.progress_reports.values())
        await doc.inline(5)
        assert (await stats(client))["modelRuns"] >= 1  # the model answers now
        # changing the model reloads it in the background; the old one's KV state goes with it
        client.workspace_did_change_configuration(t.DidChangeConfigurationParams(settings={"model": codegen}))
        s = await wait_for(lambda s: s["model"]["family"] == "codegen", client, timeout=30)
        assert s["model"]["status"] == "ready" and s["model"]["layout"] == "prefix"
        assert s["kvSessions"] == 0


async def test_default_model_is_used_without_a_model_option():
    from inference.loader import DEFAULT_MODEL_DIR

    assert (DEFAULT_MODEL_DIR / "config.json").is_file()  # the package ships it
    async with running_server(FAST) as client:
        s = await wait_model(client, timeout=120)
        assert s["model"]["status"] == "ready" and s["model"]["source"] == "(default)"
        assert s["model"]["family"] == "gpt_bigcode" and s["model"]["layout"] == "spm"
        doc = Doc(client, "file:///w/d.py", "def add(a, b):\n    return ")
        items = await doc.inline(len(doc.text))
        assert (await stats(client))["modelRuns"] == 1
        assert items and items[0].insert_text.strip()  # the trained model completes a return line
        assert not [m for m in client.messages if m.type == t.MessageType.Error]


async def test_left_to_right_family_completes_from_the_prefix(codegen):
    async with running_server(opts(model=codegen)) as client:
        s = await wait_model(client)
        assert s["model"]["family"] == "codegen" and s["model"]["layout"] == "prefix"
        doc = Doc(client, "file:///w/ltr.py", PY_SOURCE)
        offset = doc.offset_of("    \n") + 4
        for ch in "return":
            doc.insert(offset, ch)
            offset += 1
            for item in await doc.inline(offset):
                check_item(doc, offset, item)
        s = await stats(client)
        assert s["reusedTokens"]["total"] > 0


async def test_other_requests_are_answered_while_a_long_generation_runs_and_cancel_stops_it(starcoder_one_line):
    async with running_server(opts(model=starcoder_one_line, maxNewTokensMultiLine=900,
                                   requestTimeoutMs=60000)) as client:
        await wait_model(client)
        loop = asyncio.get_running_loop()
        doc = Doc(client, "file:///w/long.py", "x = 1\n")  # a blank line: a multi-line request
        params = t.InlineCompletionParams(
            text_document=t.TextDocumentIdentifier(doc.uri), position=doc.position(6),
            context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Automatic))
        long_run = asyncio.ensure_future(client.protocol.send_request_async(
            t.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="long"))
        await asyncio.sleep(0.03)
        await stats(client)  # answered by the event loop while the worker generates
        assert not long_run.done()
        client.protocol.notify(t.CANCEL_REQUEST, t.CancelParams(id="long"))
        t0 = loop.time()
        with pytest.raises(JsonRpcRequestCancelled):  # (no answer in 30 s would raise TimeoutError)
            await asyncio.wait_for(long_run, 30)
        # the cancelled run stops at its next decode step: a new request does not wait for it
        mid = Doc(client, "file:///w/mid2.py", "f(1)")
        await asyncio.wait_for(mid.inline(2), 30)
        next_answer_s = loop.time() - t0
        s = await stats(client)
        assert s["cancelled"] == 1 and s["modelRuns"] == 1  # the cancelled run is not counted

        full = Doc(client, "file:///w/full.py", "y = 2\n")  # what the cancelled run would have cost
        t0 = loop.time()
        await full.inline(6)
        full_run_s = loop.time() - t0
        assert (await stats(client))["last"]["tokens"] == 900
        assert next_answer_s < full_run_s * 0.75, (next_answer_s, full_run_s)


async def test_selected_completion_info_is_extended_and_accept_is_counted(starcoder):
    async with running_server(opts(model=starcoder)) as client:
        await wait_model(client)
        doc = Doc(client, "file:///w/sel.py", "items = []\nitems.ap")
        end = doc.position(len(doc.text))
        start = doc.position(len(doc.text) - 2)
        selected = t.SelectedCompletionInfo(range=t.Range(start, end), text="append")
        result = await client.text_document_inline_completion_async(t.InlineCompletionParams(
            text_document=t.TextDocumentIdentifier(doc.uri), position=end,
            context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Automatic,
                                              selected_completion_info=selected)))
        assert result.items
        for item in result.items:
            assert item.range.start == start and item.insert_text.startswith("append")
        cmd = result.items[0].command
        await client.workspace_execute_command_async(t.ExecuteCommandParams(
            command=cmd.command, arguments=list(cmd.arguments)))
        assert (await stats(client))["accepted"] == 1
