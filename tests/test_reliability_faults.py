"""Faults inside a running server (in-process, so the test can monkeypatch the very model, loader
and files the server uses): an exception in the model's forward, a simulated out-of-memory, a model
file that disappears or is truncated while loading, a reload during generation, a forward that
hangs. The request in flight gets an empty answer, the user one clear message, the next request
works, and every wait is bounded."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
import torch

import inference.weights as weights
from inference.engine import Engine, GenerationParams
from inference.loader import load_model
from tests.checkpoints import make_codegen
from tests.reliability_inprocess import InProcessServer

URI = "file:///w/fault.py"
TIMEOUT_MS = 1000
SLACK_S = 1.0  # lsp_server.completion.WAIT_SLACK_S


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def codegen(tmp_path_factory):
    return make_codegen(tmp_path_factory.mktemp("ckpt") / "codegen")


class Session:
    """An in-process server with one open document that the test types into."""

    def __init__(self, model, **options):
        self.ips = InProcessServer()
        self.server, self.client = self.ips.server, self.ips.client
        self.client.initialize({"model": str(model), "requestTimeoutMs": TIMEOUT_MS, "maxNewTokensMultiLine": 8,
                                "maxNewTokensSingleLine": 8, **options})
        self.text, self.version = "def add(a, b):\n    ", 1
        self.client.open(URI, self.text)

    def type_and_complete(self, ch: str = "x", timeout: float = 15.0):
        """Type a character at the end (so no cached result can answer) and ask for a completion."""
        line = self.text.count("\n")
        col = len(self.text) - self.text.rfind("\n") - 1
        self.version += 1
        self.client.change(URI, self.version, [{"range": {"start": {"line": line, "character": col},
                                                          "end": {"line": line, "character": col}}, "text": ch}])
        self.text += ch
        t0 = time.monotonic()
        answer = self.client.inline(URI, line, col + 1, timeout=timeout)
        return answer, time.monotonic() - t0

    def assert_next_request_works(self):
        runs = self.client.stats()["modelRuns"]
        answer, _ = self.type_and_complete("y")
        assert "result" in answer, answer
        s = self.client.stats()
        assert s["modelRuns"] == runs + 1, s  # the model really ran, and finished
        assert s["model"]["status"] == "ready"

    def messages_about(self, needle: str) -> list[str]:
        return [m for m in self.client.log_messages() if needle in m]

    def close(self):
        self.ips.close()


@pytest.fixture
def session(starcoder):
    s = Session(starcoder)
    assert s.client.wait_model()["model"]["status"] == "ready"
    yield s
    s.close()


def patch_forward(monkeypatch, server, fault):
    """Replace the loaded model's forward with `fault(original, *args)`."""
    model = server.worker.lm.model
    original = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: fault(original, *a, **k))


@pytest.mark.parametrize("error", [RuntimeError("injected fault in forward"),
                                   torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")])
def test_a_failing_forward_gives_an_empty_answer_one_message_and_the_next_request_works(
        session, monkeypatch, error):
    session.assert_next_request_works()
    errors_before = session.client.stats()["errors"]
    calls = []

    def fail(original, *a, **k):
        calls.append(1)
        raise error

    patch_forward(monkeypatch, session.server, fail)
    answer, waited = session.type_and_complete()
    assert calls and answer["result"] == {"items": []}
    assert waited < TIMEOUT_MS / 1000 + SLACK_S
    about = session.messages_about(type(error).__name__)
    assert len(about) == 1 and str(error) in about[0] and "Traceback" not in about[0], about
    s = session.client.stats()
    assert s["errors"] == errors_before + 1
    if isinstance(error, torch.OutOfMemoryError):
        assert s["kvSessions"] == 0 and s["kvCacheBytes"] == 0  # KV memory given back after an OOM
    monkeypatch.undo()
    session.assert_next_request_works()
    session.assert_next_request_works()
    assert len(session.messages_about(type(error).__name__)) == 1  # no repeats once it works again


def test_a_hung_forward_is_cut_off_at_the_request_timeout_and_other_requests_stay_fast(session, monkeypatch):
    release = threading.Event()

    def hang(original, *a, **k):
        release.wait(4 * TIMEOUT_MS / 1000)  # far longer than the request may wait
        return original(*a, **k)

    patch_forward(monkeypatch, session.server, hang)
    done = {}
    t = threading.Thread(target=lambda: done.update(r=session.type_and_complete()))
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    session.client.stats()  # non-completion requests are answered while the model hangs
    assert time.monotonic() - t0 < 0.5
    t.join(10)
    answer, waited = done["r"]
    assert answer["result"] == {"items": []}
    assert waited < TIMEOUT_MS / 1000 + SLACK_S + 1.0, waited  # bounded by the timeout, not the hang
    assert session.client.stats()["timeouts"] == 1
    assert len(session.messages_about("no answer from the model")) == 1
    release.set()
    monkeypatch.undo()
    session.assert_next_request_works()


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
@pytest.mark.parametrize("fault", ["truncated", "deleted"])
def test_a_model_file_truncated_or_deleted_while_loading_fails_with_one_message_then_a_good_model_works(
        tmp_path, monkeypatch, starcoder, starcoder_bin, kind, fault):
    folder = shutil.copytree(starcoder if kind == "safetensors" else starcoder_bin, tmp_path / "model")
    reader = "_read_safetensors" if kind == "safetensors" else "_read_bin"
    original = getattr(weights, reader)
    hit = []

    def sabotage(path, *how):
        hit.append(path)
        if fault == "deleted":
            path.unlink()
        else:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 3])
        return original(path, *how)

    monkeypatch.setattr(weights, reader, sabotage)
    s = Session(folder)
    try:
        state = s.client.wait_model()["model"]
        assert hit and state["status"] == "failed"
        assert hit[0].name in state["error"]  # the message names the file
        shown = s.client.shown_messages()
        assert len([m for m in shown if "could not load the model" in m]) == 1, shown
        answer, _ = s.type_and_complete()
        assert answer["result"] == {"items": []}
        # the user points at a good model: it loads and the next request works
        monkeypatch.undo()
        s.client.notify("workspace/didChangeConfiguration", {"settings": {"infill": {"model": str(starcoder)}}})
        deadline = time.monotonic() + 20
        while s.client.stats()["model"]["status"] != "ready":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        s.assert_next_request_works()
    finally:
        s.close()


def test_a_model_reload_during_generation_empties_the_request_in_flight_and_the_new_model_serves(
        session, monkeypatch, codegen):
    session.assert_next_request_works()
    started = threading.Event()

    def slow(original, *a, **k):
        started.set()
        time.sleep(0.1)
        return original(*a, **k)

    patch_forward(monkeypatch, session.server, slow)
    runs = session.client.stats()["modelRuns"]
    done = {}
    t = threading.Thread(target=lambda: done.update(r=session.type_and_complete()))
    t.start()
    assert started.wait(5)
    session.client.notify("workspace/didChangeConfiguration", {"settings": {"infill": {"model": str(codegen)}}})
    t.join(10)
    answer, waited = done["r"]
    assert answer["result"] == {"items": []}  # the old model's generation was stopped, not served
    assert session.client.stats()["modelRuns"] == runs
    assert waited < 8 * 0.1  # well before its 8 slow tokens could have finished
    deadline = time.monotonic() + 20
    while (s := session.client.stats())["model"]["status"] != "ready":
        assert time.monotonic() < deadline and s["model"]["status"] != "failed", s
        time.sleep(0.05)
    assert s["model"]["family"] == "codegen"
    session.assert_next_request_works()


def test_the_engine_state_after_a_failed_forward_still_gives_the_fresh_answer(starcoder):
    """A forward that fails mid-prefill or mid-decode leaves the session's cache consistent."""
    lm = load_model(starcoder)
    fresh, eng = Engine(lm), Engine(lm)
    params = GenerationParams(max_new_tokens=8)
    prompt = lm.encode("def fibonacci(n):\n    if n < 2:\n        return n\n")
    eng.generate(prompt[:-5], params, session="doc")
    original = lm.model.forward
    for fail_on_call in (1, 3):
        calls = []

        def flaky(*a, **k):
            calls.append(1)
            if len(calls) == fail_on_call:
                raise RuntimeError("injected")
            return original(*a, **k)

        lm.model.forward = flaky
        try:
            with pytest.raises(RuntimeError):
                eng.generate(prompt, params, session="doc")
        finally:
            lm.model.forward = original
        assert eng.generate(prompt, params, session="doc").token_ids == fresh.generate(prompt, params).token_ids
