"""llama.cpp's llama-server behind the engine boundary, against the real server: the shipped model
written as GGUF by infill-ls's own exporter (inference.gguf_export), served by the llama-server that
.ci/llama-server.sh builds (skipped here when it is missing; under CI=true a missing binary fails).

Greedy tokens equal the local engine's, an LSP session gives the same suggestion on either backend,
keystrokes hit the server's prompt cache, a cancelled request stops on the server, and a killed
server gives empty answers with one message, then suggestions again once it is back."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from inference.api import GenerationJob, GenerationParams, ModelSpec
from tests.server_harness import Doc, running_server, stats, suggest_then_lose_the_engine, wait_for, wait_model

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("INFILL_LLAMA_SERVER_DIR", Path.home() / ".cache/infill-ls-ci/llama-server"))
BINARY = CACHE / "build" / "bin" / "llama-server"

SOURCE = "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n\n"


@pytest.fixture(scope="module")
def binary() -> Path:
    if not BINARY.is_file():
        message = f"llama-server not built at {BINARY} (run `bash .ci/llama-server.sh`)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + "; CI builds it, so it must be there")
        pytest.skip(message)
    return BINARY


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory) -> Path:
    from inference.gguf_export import export_gguf

    return export_gguf(None, tmp_path_factory.mktemp("gguf") / "default-f32.gguf", "f32")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """A llama-server process on a loopback port; stop() kills it, start() brings it back on the same port."""

    def __init__(self, binary: Path, model: Path, slots: int = 2) -> None:
        self.binary, self.model, self.slots = binary, model, slots
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> None:
        env = {**os.environ, "LD_LIBRARY_PATH": str(self.binary.parent)}
        self.proc = subprocess.Popen(
            [str(self.binary), "-m", str(self.model), "--host", "127.0.0.1", "--port", str(self.port),
             "-c", str(512 * self.slots), "-np", str(self.slots), "-t", "2", "--slots", "--no-warmup"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"llama-server exited: {self.proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("llama-server did not become healthy in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def slot_states(self) -> list[dict]:
        return httpx.get(f"{self.url}/slots", timeout=5).json()


@pytest.fixture(scope="module")
def llama_server(binary, gguf_file):
    server = LlamaServer(binary, gguf_file)
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def client(llama_server):
    from inference.remote_llamacpp import LlamaServerClient

    c = LlamaServerClient(llama_server.url)
    info = c.load(ModelSpec(None)).result(30)
    yield c, info
    c.shutdown()


def fim_prompts(lm) -> list[list[int]]:
    fim = lm.fim
    cases = [("def add(a, b):\n    return ", "\n"), ("import os\n\ndef read(path):\n    with open(", ""),
             ("class Point:\n    def __init__(self, x, y):\n        self.x = x\n        ", "\n"),
             (SOURCE + "def main():\n    for i in range(10):\n        print(", ")\n")]
    return [fim.psm(lm.encode_plain(p), lm.encode_plain(s)) for p, s in cases]


def test_gguf_greedy_tokens_equal_the_local_engines(shipped_engine, client):
    lm, engine = shipped_engine
    c, info = client
    assert info.family == "gpt_bigcode" and info.fim.prefix_token == lm.fim.prefix_token
    params = GenerationParams(max_new_tokens=24, stop_token_ids=info.stop_ids)
    agree = []
    for ids in fim_prompts(lm):
        mine = engine.generate(ids, params).token_ids
        theirs = c.generate(GenerationJob(ids, params)).result(30).token_ids
        assert mine, "the local engine generated nothing: a prompt that tells nothing"
        agree.append(mine == theirs)
        assert theirs == mine, (lm.decode(mine), lm.decode(theirs))
    # token healing: the first token restricted to a set, then free decoding, on both engines
    ids = fim_prompts(lm)[0]
    allowed = tuple(lm.encode_plain(x)[0] for x in ("a", "b", "x"))
    healed = GenerationParams(max_new_tokens=8, stop_token_ids=info.stop_ids, first_token_ids=allowed)
    mine = engine.generate(ids, healed).token_ids
    theirs = c.generate(GenerationJob(ids, healed)).result(30).token_ids
    assert mine[0] in allowed and theirs == mine


def test_keystrokes_hit_the_servers_prompt_cache(shipped_engine, client):
    lm, _ = shipped_engine
    c, info = client
    prefix = "# a file no earlier test sent\n" + SOURCE + "def main():\n    value = fib"
    params = GenerationParams(max_new_tokens=4, stop_token_ids=info.stop_ids)
    first = c.generate(GenerationJob(lm.fim.psm(lm.encode_plain(prefix), []), params, session="doc")).result(30)
    typed = c.generate(GenerationJob(lm.fim.psm(lm.encode_plain(prefix + "o"), []), params,
                                     session="doc")).result(30)
    assert first.prompt_tokens > 40 and first.reused_tokens < first.prompt_tokens // 2
    # the keystroke's prompt shares all but its last tokens with the last one: the server reuses them
    assert typed.reused_tokens >= typed.prompt_tokens - 4 and typed.prefill_tokens <= 4, c.last_timings


def test_a_cancelled_request_stops_generating_on_the_server(shipped_engine, client, llama_server):
    lm, _ = shipped_engine
    c, info = client
    ids = lm.fim.psm(lm.encode_plain("x = [\n" + "    1,\n" * 20), [])  # greedy runs the whole budget here
    params = GenerationParams(max_new_tokens=400)
    assert len(ids) + 400 < info.max_context
    seen = threading.Event()

    def stop_check(generated):
        if len(generated) >= 3:
            seen.set()
        return False

    job = GenerationJob(ids, params, session="cancel-me", stop_check=stop_check)
    future = c.generate(job)
    assert seen.wait(30), f"no tokens streamed: {future.result(1) if future.done() else 'still waiting'}"
    c.cancel(job)
    result = future.result(10)
    assert result.stop_reason == "cancelled" and len(result.token_ids) < 400
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        busy = [s for s in llama_server.slot_states() if s.get("is_processing")]
        if not busy:
            break
        time.sleep(0.02)
    assert not busy, busy
    decoded = max((s.get("next_token") or [{}])[0].get("n_decoded", 0) for s in llama_server.slot_states())
    assert decoded < 400, "the server generated the whole budget although the stream was closed"


async def _suggest(options: dict, typed: str = "") -> tuple[list[str], dict]:
    async with running_server(options) as lsp:
        assert (await wait_model(lsp, 120))["model"]["status"] == "ready"
        doc = Doc(lsp, "file:///fib.py", SOURCE + "def main():\n    value = fib\n")
        cursor = doc.offset_of("fib\n") + 3
        texts = [i.insert_text for i in await doc.inline(cursor)]
        for ch in typed:
            doc.insert(cursor, ch)
            cursor += 1
            texts = [i.insert_text for i in await doc.inline(cursor)]
        return texts, await stats(lsp)


def test_an_lsp_session_suggests_the_same_on_llama_server_as_on_the_local_engine(llama_server):
    local_texts, _ = asyncio.run(_suggest({"dtype": "float32"}, typed="xy"))
    remote_texts, s = asyncio.run(_suggest({"backend": "llama.cpp", "endpoint": llama_server.url}, typed="xy"))
    assert local_texts and remote_texts == local_texts
    runs = [r for rec in s["recentRequests"] for r in rec["runs"]]
    assert runs and s["engine"] == "llama.cpp"
    last = runs[-1]  # a keystroke: the prompt comes from the server's cache but its last tokens
    assert last["reused_tokens"] >= last["prompt_tokens"] - 4 and last["prefill_tokens"] <= 4, last


def test_a_server_for_a_remote_engine_never_loads_torch(llama_server):
    """The editor side is torch-free: with a remote backend the LSP server process maps no libtorch
    (it would hold ~250 MB per editor for nothing); with the local one it does."""
    async def mapped_torch(options: dict) -> bool:
        async with running_server(options) as lsp:
            assert (await wait_model(lsp, 120))["model"]["status"] == "ready"
            doc = Doc(lsp, "file:///t.py", SOURCE + "def main():\n    value = fib\n")
            assert await doc.inline(doc.offset_of("fib\n") + 3)
            return "libtorch" in Path(f"/proc/{lsp._server.pid}/maps").read_text()

    assert not asyncio.run(mapped_torch({"backend": "llama.cpp", "endpoint": llama_server.url}))
    assert asyncio.run(mapped_torch({}))


def test_a_killed_server_gives_empty_answers_and_one_message_then_suggestions_again(binary, gguf_file):
    server = LlamaServer(binary, gguf_file, slots=1)
    server.start()

    async def session():
        async with running_server({"backend": "llama.cpp", "endpoint": server.url}) as lsp:
            doc, cursor = await suggest_then_lose_the_engine(lsp, SOURCE + "def main():\n    value = fib\n", "value = fib",
                                                             server.stop, "llama.cpp", server.url)
            server.start()
            doc.insert(cursor, "a")
            assert await doc.inline(cursor + 1), "no suggestion after the server came back"

    try:
        asyncio.run(session())
    finally:
        server.stop()


def test_a_server_down_when_the_editor_starts_is_tried_again_until_it_answers(binary, gguf_file):
    """The engine is not up yet at load: one message, empty answers, and with no change of options
    the model is ready by itself once the engine starts (the load is retried with backoff)."""
    server = LlamaServer(binary, gguf_file, slots=1)

    async def session():
        async with running_server({"backend": "llama.cpp", "endpoint": server.url}) as lsp:
            s = await wait_model(lsp, 30)
            assert s["model"]["status"] == "failed" and server.url in s["model"]["error"]
            doc = Doc(lsp, "file:///late.py", SOURCE + "def main():\n    value = fib\n")
            cursor = doc.offset_of("fib\n") + 3
            assert await doc.inline(cursor) == []
            await asyncio.sleep(3.5)  # a few retries go by (1 s, 2 s...): still one message
            server.start()
            s = await wait_for(lambda st: st["model"]["status"] == "ready", lsp, timeout=30)
            assert s["model"]["status"] == "ready", s["model"]
            assert await doc.inline(cursor), "no suggestion once the engine answered"
            messages = [m.message for m in lsp.messages if "engine failed" in m.message]
            assert len(messages) == 1 and "cannot reach" in messages[0] and "keeps trying" in messages[0], messages

    try:
        asyncio.run(session())
    finally:
        server.stop()
