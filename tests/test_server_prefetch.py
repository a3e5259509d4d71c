"""infill/prefetch end to end (the real server over stdio, tiny random checkpoints): a prefetch where
the cursor came to rest fills the document's KV cache, so the first keystroke there prefills a few
tokens; it keeps its suggestion; it never delays a request; bad params are dropped with a log line."""

from __future__ import annotations

import asyncio
import re

import pytest
from lsprotocol import types as t

from tests.checkpoints import make_gpt_bigcode
from tests.server_harness import Doc, favour_printable_tokens, running_server, stats, wait_for, wait_model

METHOD = "infill/prefetch"
# a long file, so that a new place's prompt is hundreds of tokens
LONG = "".join(f"def function_{i}(a, b):\n    return a * {i} + b\n\n\n" for i in range(60))
FAST = {"maxNewTokensSingleLine": 6, "maxNewTokensMultiLine": 6}


@pytest.fixture(scope="module")
def starcoder(tmp_path_factory):
    folder = make_gpt_bigcode(tmp_path_factory.mktemp("ckpt") / "starcoder", n_positions=2048)
    favour_printable_tokens(folder)
    return str(folder)


@pytest.fixture(scope="module")
def slow_starcoder(tmp_path_factory):
    """Never ends a run before its token limit (no line break, no special token)."""
    folder = make_gpt_bigcode(tmp_path_factory.mktemp("ckpt") / "slow", seed=1, n_layer=4, n_embd=256, n_head=4,
                              n_positions=2048)
    favour_printable_tokens(folder, forbid="\n\r", suppress_specials=True)
    return str(folder)


def prefetch(doc: Doc, offset: int, **override) -> None:
    params = {"textDocument": {"uri": doc.uri}, "position": {"line": doc.position(offset).line,
                                                            "character": doc.position(offset).character}}
    params.update(override)
    doc.client.protocol.notify(METHOD, params)


async def test_prefetch_warms_the_place_so_the_first_keystroke_prefills_a_few_tokens(starcoder):
    async with running_server({**FAST, "model": starcoder, "logLevel": "info"}) as client:
        await wait_model(client)
        doc = Doc(client, "file:///w/long.py", LONG)
        here = doc.offset_of("def function_40") - 2  # the end of a line deep in the file

        # without a prefetch (another place, as far from the rest): the first keystroke prefills it all
        cold = doc.offset_of("def function_20") - 2
        doc.insert(cold, "x")
        await doc.inline(cold + 1)
        s = await stats(client)
        cold_prefill = s["last"]["prefill_tokens"]
        assert cold_prefill > 300 and s["prefetch"]["received"] == 0

        here = doc.offset_of("def function_40") - 2
        prefetch(doc, here)
        s = await wait_for(lambda s: s["prefetch"]["modelRuns"] == 1, client, timeout=30)
        assert s["prefetch"] == {"received": 1, "modelRuns": 1, "skipped": 0, "cancelled": 0}
        assert s["requests"] == 1 and s["modelRuns"] == 1  # not counted as a request

        # asked at the same place with nothing typed: the prefetched suggestion, no model run
        shown = s["suggestionsShown"]
        items = await doc.inline(here)
        s = await stats(client)
        assert s["served"].get("cache") == 1 and s["modelRuns"] == 1
        assert s["suggestionsShown"] == shown + (1 if items else 0)

        # the first keystroke there, a character the suggestion does not start with (so the model runs)
        key = not_typed_through(items)
        doc.insert(here, key)
        await doc.inline(here + 1)
        s = await stats(client)
        assert s["modelRuns"] == 2
        assert s["last"]["prefill_tokens"] <= 3 and s["last"]["reused_tokens"] > 300, s["last"]

        # the same place again: its suggestion is known, the run only checks the KV cache (one token)
        prefetch(doc, here + 1)
        s = await wait_for(lambda s: s["prefetch"]["modelRuns"] == 2, client)
        assert prefetch_prefills(client)[-1] <= 1

        # closed and opened again (its KV cache is gone, the suggestion still in the result cache): the
        # prefetch refills the KV cache, so the keystroke after the cached answer prefills a few tokens
        doc.close()
        again = Doc(client, "file:///w/long.py", doc.text)
        prefetch(again, here + 1)
        s = await wait_for(lambda s: s["prefetch"]["modelRuns"] == 3, client, timeout=30)
        assert prefetch_prefills(client)[-1] > 300
        runs = s["modelRuns"]
        cached = await again.inline(here + 1)
        assert (await stats(client))["modelRuns"] == runs  # from the result cache
        again.insert(here + 1, not_typed_through(cached))
        await again.inline(here + 2)
        s = await stats(client)
        assert s["modelRuns"] == runs + 1
        assert s["last"]["prefill_tokens"] <= 3 and s["last"]["reused_tokens"] > 300, s["last"]


def not_typed_through(items) -> str:
    """A key that the suggestion shown does not start with: typing it asks the model."""
    first = items[0].insert_text[:1] if items else ""
    return "q" if first != "q" else "w"


def prefetch_prefills(client) -> list[int]:
    """prefill_tokens of each prefetch model run, from the server's log."""
    return [int(m.group(1)) for m in (re.search(r"^prefetch #\d+\.0 .*?prefill_tokens=(\d+)", x.message)
                                      for x in client.log_messages) if m]


async def test_a_request_cancels_a_running_prefetch_and_a_prefetch_never_delays_a_request(slow_starcoder):
    opts = {"model": slow_starcoder, "maxNewTokensSingleLine": 1000, "maxNewTokensMultiLine": 1000,
            "requestTimeoutMs": 60000}
    async with running_server(opts) as client:
        await wait_model(client)
        a = Doc(client, "file:///w/a.py", "x = 1\n")
        b = Doc(client, "file:///w/b.py", "f(1)")
        loop = asyncio.get_running_loop()
        prefetch(a, 6)  # a 1 000-token run: seconds
        await wait_for(lambda s: s["prefetch"]["received"] == 1, client)
        t0 = loop.time()
        await b.inline(2)  # a request in another document
        request_s = loop.time() - t0
        s = await stats(client)
        assert s["prefetch"]["cancelled"] == 1 and s["prefetch"]["modelRuns"] == 0
        assert s["modelRuns"] == 1

        # while a request runs, a prefetch is dropped at once
        c = Doc(client, "file:///w/c.py", "y = 2\n")
        running = asyncio.ensure_future(c.inline(6))
        await wait_for(lambda s: s["requests"] == 2, client)
        await asyncio.sleep(0.05)
        assert not running.done()
        prefetch(a, 6)
        s = await wait_for(lambda s: s["prefetch"]["received"] == 2, client)
        assert s["prefetch"]["skipped"] == 1 and not running.done()
        await running
        assert (await stats(client))["modelRuns"] == 2  # the request ran to its end

        # an edit of its document cancels a prefetch
        prefetch(a, 6)
        await wait_for(lambda s: s["prefetch"]["received"] == 3, client)
        await asyncio.sleep(0.2)
        a.insert(6, "z")
        s = await wait_for(lambda s: s["prefetch"]["cancelled"] == 2, client)
        assert s["prefetch"]["cancelled"] == 2 and s["prefetch"]["modelRuns"] == 0
        assert request_s < 30


async def test_bad_prefetch_params_are_dropped_with_a_reason_and_prefetch_can_be_turned_off(starcoder):
    async with running_server({**FAST, "model": starcoder, "logLevel": "debug"}) as client:
        await wait_model(client)
        doc = Doc(client, "file:///w/p.py", "import os\n")
        prefetch(doc, 0, position={"line": -1, "character": 0})
        prefetch(doc, 0, textDocument={})
        client.protocol.notify(METHOD, None)
        prefetch(doc, 0, position={"line": 0, "character": 99})  # past the end of the line
        prefetch(doc, 0, textDocument={"uri": "file:///w/not-open.py"})
        s = await wait_for(lambda s: s["invalidRequests"] == 5, client)
        assert s["invalidRequests"] == 5 and s["prefetch"]["modelRuns"] == 0
        messages = " ".join(m.message for m in client.log_messages)
        assert "params.position.line must be a whole number" in messages
        assert "params.textDocument.uri must be a string" in messages
        assert "prefetch at a position outside the document" in messages
        assert "prefetch for a document that is not open: file:///w/not-open.py" in messages

        client.workspace_did_change_configuration(t.DidChangeConfigurationParams(settings={"prefetch": False}))
        prefetch(doc, 10)
        await asyncio.sleep(0.3)
        s = await stats(client)
        assert s["config"]["prefetch"] is False
        assert s["prefetch"]["received"] == 2 and s["prefetch"]["modelRuns"] == 0
        await doc.inline(10)  # the server still answers, with the model
        s = await stats(client)
        assert s["requests"] == 1 and s["modelRuns"] == 1 and s["errors"] == 0
