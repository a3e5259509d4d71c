"""What the options the README lists do, seen from the client (the real server over stdio, tiny random
checkpoints): `device`, `dtype`, `prefillDtype` and `kvBudgetMb` reload the model and a sampling option
does not; `contextTokens` bounds prompt + generation; `suffixFraction` shares the prompt between the
code after and before the cursor; `rateLimit` bounds the model requests started per second."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types as t

from tests.checkpoints import make_gpt_bigcode
from tests.server_harness import Doc, favour_printable_tokens, running_server, stats, wait_for, wait_model

FAST = {"maxNewTokensSingleLine": 4, "maxNewTokensMultiLine": 4}
# a long file: every place's prompt is limited by the budget, on both sides of the cursor
LONG = "".join(f"def function_{i}(a, b):\n    return a * {i} + b\n\n\n" for i in range(60))


@pytest.fixture(scope="module")
def starcoder(tmp_path_factory):
    folder = make_gpt_bigcode(tmp_path_factory.mktemp("ckpt") / "starcoder", n_positions=1024)
    favour_printable_tokens(folder)
    return str(folder)


def configure(client, **options) -> None:
    client.workspace_did_change_configuration(t.DidChangeConfigurationParams(settings=options))


def loads(client) -> int:
    """How many times the server said it started loading a model (window/logMessage, level info)."""
    return sum(m.message.startswith("loading model") for m in client.log_messages)


@pytest.mark.parametrize("option,value", [("device", "cpu"), ("dtype", "float32"), ("prefillDtype", "model"),
                                          ("kvBudgetMb", 128)])
async def test_a_model_option_reloads_the_model_and_a_sampling_option_does_not(starcoder, option, value):
    async with running_server({**FAST, "model": starcoder, "logLevel": "info"}) as client:
        await wait_model(client)
        doc = Doc(client, "file:///w/reload.py", "def f(x):\n    return ")
        await doc.inline(len(doc.text))
        assert (await stats(client))["kvSessions"] == 1 and loads(client) == 1

        configure(client, model=starcoder, logLevel="info", temperature=0.5, topP=0.9, **FAST)
        s = await wait_for(lambda s: s["config"]["temperature"] == 0.5, client)
        await asyncio.sleep(0.3)
        s = await stats(client)
        assert s["config"]["temperature"] == 0.5 and s["model"]["status"] == "ready"
        assert loads(client) == 1 and s["kvSessions"] == 1  # no reload: the KV state stays

        configure(client, model=starcoder, logLevel="info", **{option: value}, **FAST)
        s = await wait_for(lambda s: loads(client) == 2 and s["model"]["status"] == "ready", client, timeout=30)
        assert loads(client) == 2 and s["model"]["status"] == "ready", s["model"]
        assert s["config"][option] == value
        assert s["kvSessions"] == 0  # the old model's KV state went with it
        await doc.inline(len(doc.text))
        assert (await stats(client))["modelRuns"] == 2  # and the new one answers


async def test_context_tokens_bounds_prompt_plus_generation(starcoder):
    async with running_server({**FAST, "model": starcoder, "logLevel": "info"}) as client:
        await wait_model(client)
        doc = Doc(client, "file:///w/ctx.py", LONG)
        cursor = doc.offset_of("def function_30") - 2
        await doc.inline(cursor)
        full = (await stats(client))["last"]["prompt_tokens"]
        assert full > 600  # the model's 1024-token context, less the suggestion's budget

        configure(client, model=starcoder, contextTokens=200, **FAST)
        await wait_for(lambda s: s["config"]["contextTokens"] == 200, client)
        doc.insert(cursor, "x")  # a context not in the result cache
        await doc.inline(cursor + 1)
        last = (await stats(client))["last"]
        assert 100 < last["prompt_tokens"] <= 200 - FAST["maxNewTokensSingleLine"], last


async def test_suffix_fraction_shares_the_prompt_between_suffix_and_prefix(starcoder):
    async with running_server({**FAST, "model": starcoder, "logLevel": "info", "contextTokens": 400}) as client:
        await wait_model(client)
        doc = Doc(client, "file:///w/sfx.py", LONG)
        cursor = doc.offset_of("def function_30") - 2
        shares = {}
        for i, fraction in enumerate((0.0, 0.25, 0.5)):
            configure(client, model=starcoder, contextTokens=400, suffixFraction=fraction, **FAST)
            await wait_for(lambda s: s["config"]["suffixFraction"] == fraction, client)
            doc.insert(cursor + i, "x")  # a new context each time
            await doc.inline(cursor + i + 1)
            last = (await stats(client))["last"]
            shares[fraction] = (last["prompt_suffix_tokens"], last["prompt_prefix_tokens"])
        assert shares[0.0][0] == 0
        usable = sum(shares[0.25])
        for fraction in (0.25, 0.5):  # each side near its share (cuts fall at line boundaries)
            suffix, prefix = shares[fraction]
            assert abs(suffix - fraction * usable) <= 0.1 * usable, shares
        assert shares[0.0][1] > shares[0.25][1] > shares[0.5][1], shares


async def test_rate_limit_bounds_model_requests_started_per_second(starcoder):
    async def six_requests(doc) -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for _ in range(6):
            # a new context each time, never typed through a suggestion: every request runs the model
            doc.insert(len(doc.text), "\u00a7")
            await doc.inline(len(doc.text))
        return loop.time() - t0

    async with running_server({**FAST, "model": starcoder, "rateLimit": 1000}) as client:
        await wait_model(client)
        fast = await six_requests(Doc(client, "file:///w/rate-a.py", "x = 1\ny = "))
        configure(client, model=starcoder, rateLimit=2, **FAST)
        await wait_for(lambda s: s["config"]["rateLimit"] == 2, client)
        await asyncio.sleep(1.1)  # the requests above no longer count
        slow = await six_requests(Doc(client, "file:///w/rate-b.py", "x = 1\ny = "))
        s = await stats(client)
        assert s["modelRuns"] == 12 and s["superseded"] == 0
    # 2 a second: the 3rd and 4th wait for the 2nd second, the 5th and 6th for the 3rd
    assert slow >= 1.9, (slow, fast)
    assert fast < slow - 1.0, (slow, fast)


async def test_fim_format_overrides_the_detected_format_and_a_misfit_is_a_clear_load_error(starcoder):
    """`fimFormat` reloads the model's prompt layout: "santacoder" on a StarCoder tokenizer (no
    <fim-prefix>) fails the load naming the token; "starcoder" (what auto finds) serves again."""
    async with running_server({**FAST, "model": starcoder}) as client:
        assert (await wait_model(client))["model"]["layout"] == "spm"
        configure(client, model=starcoder, fimFormat="santacoder", **FAST)
        s = await wait_for(lambda s: s["model"]["status"] == "failed", client, timeout=30)
        assert "fimFormat" in s["model"]["error"] and "<fim-prefix>" in s["model"]["error"], s["model"]
        doc = Doc(client, "file:///w/fim.py", "def f(x):\n    return ")
        assert await doc.inline(len(doc.text)) == []
        configure(client, model=starcoder, fimFormat="starcoder", **FAST)
        s = await wait_for(lambda s: s["model"]["status"] == "ready", client, timeout=30)
        assert s["model"]["status"] == "ready" and s["config"]["fimFormat"] == "starcoder"
        assert any("fimFormat" in m.message for m in client.messages)
