"""Malformed protocol against the real server process over stdio, as raw bytes: the server answers
per the LSP/JSON-RPC spec or drops the message with a log line, and always stays up (a normal
request works afterwards)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.checkpoints import make_gpt_bigcode
from tests.reliability_client import TEST_SERVER_COMMAND, RawClient, frame
from tests.reliability_server_main import DOCUMENT_TEXT_COMMAND

SOURCE = "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))\n"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return str(make_gpt_bigcode(tmp_path_factory.mktemp("ckpt") / "starcoder"))


@pytest.fixture(scope="module")
def server(checkpoint):
    # offline: a random "model" option shaped like a hub id must not reach for the network
    client = RawClient(TEST_SERVER_COMMAND, ["--log-level", "warning"],
                       env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    client.initialize({"model": checkpoint, "maxNewTokensSingleLine": 4, "maxNewTokensMultiLine": 8})
    assert client.wait_model()["model"]["status"] == "ready"
    client.open("file:///w/ok.py", SOURCE)
    yield client
    client.close()


def doc_text(client: RawClient, uri: str):
    return client.request("workspace/executeCommand", {"command": DOCUMENT_TEXT_COMMAND, "arguments": [uri]})["result"]


def normal_request_works(client: RawClient) -> None:
    answer = client.inline("file:///w/ok.py", 1, 4, timeout=15)
    assert "result" in answer, answer
    assert client.assert_alive()["model"]["status"] == "ready"


def stderr_grows(client: RawClient, before: int, timeout: float = 3.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(client.stderr) > before:
            return client.stderr[before:]
        time.sleep(0.02)
    raise AssertionError("no log line for a dropped message")


# what a handler that raised leaves on the server's stderr (pygls reports it as a protocol error; an
# uncaught exception in our code is logged with its traceback at ERROR)
HANDLER_FAILURE_MARKS = ("Traceback", "protocol error", " ERROR ")


def failure_mark(client: RawClient) -> tuple[int, int, int]:
    """Where the server's stderr, error counter and client log messages stand now."""
    with client._lock:
        notes = len(client.notifications)
    return len(client.stderr), client.stats(timeout=5)["errors"], notes


def assert_no_handler_failed_since(client: RawClient, mark: tuple[int, int, int]) -> None:
    """Nothing since `mark` raised in a handler: no traceback or protocol error on stderr, the
    `errors` counter of infill.stats unchanged, no error-level log message to the client other than
    a model that could not be loaded (a random `model` option)."""
    stderr_at, errors_at, notes_at = mark
    new_stderr = client.stderr[stderr_at:]
    assert not any(m in new_stderr for m in HANDLER_FAILURE_MARKS), new_stderr[-3000:]
    assert client.stats(timeout=5)["errors"] == errors_at
    with client._lock:
        notes = client.notifications[notes_at:]
    failures = [n["params"]["message"] for n in notes if n.get("method") in ("window/logMessage", "window/showMessage")
                and n["params"].get("type") == 1 and "could not load" not in n["params"]["message"]]
    assert failures == [], failures


def test_requests_before_initialize_get_server_not_initialized():
    with RawClient(TEST_SERVER_COMMAND) as client:
        for method, params in [("workspace/executeCommand", {"command": "infill.stats", "arguments": []}),
                               ("textDocument/inlineCompletion", {
                                   "textDocument": {"uri": "file:///a.py"}, "position": {"line": 0, "character": 0},
                                   "context": {"triggerKind": 2}}),
                               ("shutdown", None)]:
            answer = client.request(method, params)
            assert answer["error"]["code"] == -32002, answer
        client.open("file:///a.py", "x = 1\n")  # a notification before initialize is dropped
        client.initialize({"model": "/nonexistent/model"})
        assert doc_text(client, "file:///a.py") is None
        assert "before initialize" in client.stderr


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(min_size=1, max_size=400).filter(lambda b: b"Content-Length" not in b))
def test_garbage_bytes_are_skipped_until_the_next_frame(server, garbage):
    server.send_bytes(garbage + b"\r\n\r\n")
    assert server.stats(timeout=5)["model"]["status"] == "ready"


@pytest.mark.parametrize("header", [
    b"Content-Length: 5\r\n\r\n{}",               # shorter than the body: the rest is garbage
    b"Content-Length: 300\r\n\r\n{}",             # longer: swallows what follows
    b"Content-Length: abc\r\n\r\n{}",
    b"Content-Length: -12\r\n\r\n{}",
    b"Content-Length: 99999999999\r\n\r\n{}",      # would be a 100 GB allocation
    b"Content-Type: application/json\r\n\r\n{}",  # no length at all
])
def test_bad_content_length_never_takes_the_server_down(server, header):
    server.send_bytes(header + b"\r\n" + b" " * 300 + b"\r\n\r\n")
    for attempt in range(3):  # the frame right after a bad one may be swallowed; the stream recovers
        try:
            server.stats(timeout=3)
            break
        except TimeoutError:
            assert attempt < 2 and server.proc.poll() is None, server.stderr[-2000:]
    normal_request_works(server)


@pytest.mark.parametrize("body", [b"{not json", b"[]", b"null", b"123", b'"text"', b'{"jsonrpc": "2.0"}',
                                  b'{"jsonrpc": "1.0", "id": 9, "method": "initialize"}',
                                  b'[{"jsonrpc": "2.0", "id": 7, "method": "shutdown"}]',
                                  b'{"jsonrpc": "2.0", "id": {"x": 1}, "method": "textDocument/completion"}',
                                  b'{"jsonrpc": "2.0", "id": 5, "method": "textDocument/inlineCompletion"'])
def test_invalid_json_rpc_is_dropped_with_a_log_line(server, body):
    before = len(server.stderr)
    server.send_bytes(frame(body))
    stderr_grows(server, before)
    normal_request_works(server)


def test_a_body_that_is_not_json_gets_a_parse_error(server):
    server.send_bytes(frame(b"{not json"))
    answer = server.wait_response(None, timeout=10)  # JSON-RPC: "id": null when the id could not be read
    assert answer["error"]["code"] == -32700, answer
    normal_request_works(server)


def test_unknown_methods_get_method_not_found_and_unknown_notifications_are_ignored(server):
    for method in ("foo/bar", "textDocument/nonsense", "$/unknownRequest"):
        assert server.request(method, {"x": 1})["error"]["code"] == -32601
    server.notify("foo/baz", {"x": 1})
    server.notify("$/setTrace", {"value": "verbose"})
    normal_request_works(server)


@pytest.mark.parametrize("method,params,expected", [
    ("textDocument/inlineCompletion", {"textDocument": {"uri": 5}, "position": {"line": "a", "character": 0}},
     "invalid"),
    ("textDocument/inlineCompletion", {"textDocument": {"uri": "file:///w/ok.py"},
                                       "position": {"line": 0, "character": -1}, "context": {"triggerKind": 2}},
     "invalid"),
    ("textDocument/inlineCompletion", {"textDocument": {"uri": "file:///w/ok.py"},  # well-typed, not in the file
                                       "position": {"line": 2**31 - 1, "character": 0}, "context": {"triggerKind": 2}},
     "empty"),
    ("textDocument/inlineCompletion", {"textDocument": {"uri": "file:///w/ok.py"},  # past LSP's uinteger
                                       "position": {"line": 2**31, "character": 0}, "context": {"triggerKind": 2}},
     "invalid"),
    ("textDocument/completion", "a string", "invalid"),
    ("textDocument/completion", [1, 2, 3], "invalid"),
    ("workspace/executeCommand", {"command": 42}, "invalid"),
])
def test_wrong_param_types_get_invalid_params(server, method, params, expected):
    answer = server.request(method, params, timeout=5)
    if expected == "invalid":
        assert answer["error"]["code"] == -32602, answer
    else:
        assert answer["result"] in (None, {"items": []}), answer
    normal_request_works(server)


def test_bad_notifications_are_dropped_and_the_document_is_untouched(server):
    uri = "file:///w/ok.py"
    server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "text": 5}})
    server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": "x"},
                                             "contentChanges": [{"text": "LOST"}]})
    server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 3}, "contentChanges": [
        {"range": {"start": {"line": None, "character": 0}, "end": {"line": 0, "character": 0}}, "text": "LOST"}]})
    server.notify("textDocument/didClose", {})
    server.notify("workspace/didChangeConfiguration", {"settings": "not an object"})
    assert doc_text(server, uri) == SOURCE
    normal_request_works(server)


def test_requests_for_a_document_never_opened_get_empty_results(server):
    uri = "file:///w/never-opened.py"
    assert server.inline(uri, 0, 0)["result"] == {"items": []}
    answer = server.request("textDocument/completion", {"textDocument": {"uri": uri},
                                                        "position": {"line": 3, "character": 1}})
    assert answer["result"] is None or answer["result"]["items"] == []
    server.change(uri, 2, [{"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}},
                            "text": "x"}])
    server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    assert doc_text(server, uri) is None
    normal_request_works(server)


def test_a_10_mb_document_is_tracked_and_completed_in_bounded_time(server):
    uri = "file:///w/big.py"
    line = "value_%06d = compute(%d, 'some text')  # é 中 😀\n"
    text = "".join(line % (i, i) for i in range(10 * 2**20 // len(line)))
    assert len(text.encode()) > 10 * 10**6
    t0 = time.monotonic()
    server.open(uri, text)
    last = text.count("\n")
    middle = last // 2
    server.change(uri, 2, [{"range": {"start": {"line": middle, "character": 0},
                                      "end": {"line": middle, "character": 0}}, "text": "def f(x):\n    "}])
    for ln, ch in ((middle + 1, 4), (last, 0)):
        answer = server.inline(uri, ln, ch, timeout=30)
        assert "result" in answer, answer
    elapsed = time.monotonic() - t0
    assert elapsed < 30, elapsed
    t1 = time.monotonic()
    server.stats()  # other requests stay fast with a huge document open
    assert time.monotonic() - t1 < 2.0
    expected = text.split("\n")
    expected.insert(middle, "def f(x):")
    expected[middle + 1] = "    " + expected[middle + 1]
    held = doc_text(server, uri)
    assert held == "\n".join(expected)
    server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    normal_request_works(server)


def test_nul_bytes_are_kept_and_invalid_utf8_is_dropped_with_a_log_line(server):
    uri = "file:///w/nul.py"
    server.open(uri, "a = '\x00'\nb = 1\x00\n")
    assert doc_text(server, uri) == "a = '\x00'\nb = 1\x00\n"
    assert "result" in server.inline(uri, 1, 5)
    before = len(server.stderr)
    bad = json.dumps({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": "file:///w/latin1.py", "languageId": "python", "version": 1, "text": "caf__"}}}).encode()
    server.send_bytes(frame(bad.replace(b"caf__", b"caf\xe9\xff")))
    stderr_grows(server, before)
    raw_nul = b'{"jsonrpc": "2.0", "id": 999, "method": "shutdown", "params": "\x00"}'
    server.send_bytes(frame(raw_nul))  # a raw control character: not JSON
    assert doc_text(server, "file:///w/latin1.py") is None
    normal_request_works(server)


def test_a_client_that_cancels_every_request_gets_an_answer_to_each(server):
    uri = "file:///w/cancel.py"
    server.open(uri, SOURCE)
    ids = []
    for i in range(30):
        msg_id = server.inline_async(uri, 1, 4 + (i % 3))
        server.notify("$/cancelRequest", {"id": msg_id})
        ids.append(msg_id)
    answers = [server.wait_response(i, timeout=20) for i in ids]
    for a in answers:
        assert "result" in a or a["error"]["code"] in (-32800,), a  # RequestCancelled
    s = server.assert_alive()
    assert s["errors"] == 0
    normal_request_works(server)


def test_a_client_that_stops_reading_for_a_while_gets_every_answer_afterwards(server):
    server.reading.clear()  # the reader thread stops after the message it is on; the pipe fills up
    time.sleep(0.2)
    ids = [server.request_async("workspace/executeCommand", {"command": "infill.stats", "arguments": []})
           for _ in range(150)]  # ~2 KB each: far more than a pipe buffer
    timer = threading.Timer(3.0, server.reading.set)
    timer.start()
    answers = [server.wait_response(i, timeout=30) for i in ids]
    timer.join()
    assert all("result" in a for a in answers)
    normal_request_works(server)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20) | st.sampled_from(["", "\x00", "auto", "cuda", "trace", "*", "-1"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6)
# every option but logFile (a random path would be created in the working tree; NUL paths are below)
OPTION_NAMES = ["model", "device", "dtype", "prefillDtype", "maxNewTokensSingleLine", "maxNewTokensMultiLine", "temperature",
                "topP", "numCandidates", "debounceMs", "rateLimit", "contextTokens", "suffixFraction", "kvBudgetMb",
                "requestTimeoutMs", "prefetch", "languages", "logLevel"]
option_dicts = st.dictionaries(st.sampled_from(OPTION_NAMES) | st.text(max_size=10).filter(
    lambda k: k.lower().replace("_", "") not in ("logfile", "infill", "infillls", "infill-ls")), json_values,
    max_size=6)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=option_dicts, nested=st.booleans())
def test_random_option_values_in_configuration_never_break_the_server(server, checkpoint, options, nested):
    mark = failure_mark(server)
    server.notify("workspace/didChangeConfiguration", {"settings": {"infill": options} if nested else options})
    s = server.stats(timeout=5)
    assert s["config"]["requestTimeoutMs"] >= 50 and s["config"]["maxNewTokensSingleLine"] >= 1
    # every value was taken or refused with a warning; the handler itself never raised
    assert_no_handler_failed_since(server, mark)
    # back to the working options (a random model/device makes the model reload or fail)
    server.notify("workspace/didChangeConfiguration", {"settings": {
        "model": checkpoint, "device": "auto", "dtype": "auto", "prefillDtype": "auto", "kvBudgetMb": 256, "languages": ["*"],
        "logLevel": "warning", "maxNewTokensSingleLine": 4, "maxNewTokensMultiLine": 8, "requestTimeoutMs": 5000,
        "debounceMs": 0, "rateLimit": 20, "contextTokens": 0, "numCandidates": 3, "temperature": 0,
        "prefetch": True}})


prefetch_params = json_values | st.fixed_dictionaries({
    "textDocument": st.fixed_dictionaries({"uri": st.sampled_from(["file:///w/ok.py", "file:///w/nope.py"]) | json_values}),
    "position": st.fixed_dictionaries({"line": st.integers(-3, 2**40) | json_values,
                                       "character": st.integers(-3, 2**40) | json_values})})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=prefetch_params)
def test_random_prefetch_params_never_break_the_server_or_touch_the_document(server, params):
    before = server.wait_model()  # (the test above may leave it reloading)
    assert before["model"]["status"] == "ready"
    mark = failure_mark(server)
    server.notify("infill/prefetch", params)
    assert doc_text(server, "file:///w/ok.py") == SOURCE
    # each prefetch was taken (received: run, skipped or cancelled), counted invalid, or, when its params
    # are not even an object, dropped by the protocol layer with a log line; none made a handler fail
    after = server.stats(timeout=5)
    handled = (after["prefetch"]["received"] + after["invalidRequests"]
               - before["prefetch"]["received"] - before["invalidRequests"])
    dropped = "invalid params for infill/prefetch" in server.stderr[mark[0]:]
    assert handled >= 1 or dropped, (params, handled, server.stderr[mark[0]:])
    assert_no_handler_failed_since(server, mark)


def test_initialize_with_every_option_wrong_still_starts_with_warnings(tmp_path):
    bad = {name: {"nested": [1, None]} for name in OPTION_NAMES}
    bad.update(logFile=str(tmp_path / "a\x00b.log"), model=str(tmp_path / "missing\x00model"))
    with RawClient(TEST_SERVER_COMMAND) as client:
        answer = client.initialize(bad)
        assert "capabilities" in answer["result"], answer
        assert client.wait_model()["model"]["status"] == "failed"
        shown = client.shown_messages()
        assert any("logFile" in m or "log file" in m for m in shown) and any("maxNewTokensSingleLine" in m for m in shown)
        assert client.assert_alive()["config"]["requestTimeoutMs"] == 5000  # defaults in place of the bad values


def test_requests_after_shutdown_get_invalid_request_and_exit_ends_the_process(checkpoint):
    client = RawClient(TEST_SERVER_COMMAND)
    client.initialize({"model": "/nonexistent/model"})
    assert client.request("shutdown")["result"] is None
    answer = client.request("workspace/executeCommand", {"command": "infill.stats", "arguments": []}, timeout=5)
    assert answer["error"]["code"] == -32600, answer
    client.notify("exit")
    assert client.proc.wait(15) == 0


def test_exit_without_shutdown_ends_the_process_with_code_1(checkpoint):
    client = RawClient(TEST_SERVER_COMMAND)
    client.initialize({"model": "/nonexistent/model"})
    client.notify("exit")
    assert client.proc.wait(15) == 1


def test_an_editor_that_disappears_mid_generation_leaves_the_server_to_exit_cleanly(checkpoint):
    """stdin closes (the editor died) while the model generates: the process ends, without the
    abort a torch op on the worker thread at interpreter exit would cause."""
    for delay in (0.0, 0.02):  # the abort was intermittent (about 1 run in 3 before the fix)
        client = RawClient(TEST_SERVER_COMMAND, env={"OMP_NUM_THREADS": "1"})
        client.initialize({"model": checkpoint, "maxNewTokensMultiLine": 64, "maxNewTokensSingleLine": 64})
        assert client.wait_model()["model"]["status"] == "ready"
        client.open("file:///w/gone.py", SOURCE)
        client.inline_async("file:///w/gone.py", 1, 4)
        time.sleep(delay)
        client.proc.stdin.close()
        assert client.proc.wait(15) == 0, client.stderr[-2000:]
        assert "terminate called" not in client.stderr


def test_over_tcp_a_client_sending_garbage_then_vanishing_does_not_stop_the_next_one(tmp_path):
    import socket
    import subprocess
    import sys

    from tests.reliability_client import ROOT

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lsp_server.serve", "--tcp", str(port)], cwd=ROOT,
                            stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def connect():
        deadline = time.monotonic() + 15
        while True:
            try:
                return socket.create_connection(("127.0.0.1", port), timeout=10)
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)

    try:
        with connect() as first:
            first.sendall(b"garbage\r\n\r\n" + frame(b"{not json") + b"Content-Length: 99999999999\r\n\r\n{}")
            time.sleep(0.3)
        with connect() as second:
            second.sendall(frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "processId": None, "rootUri": None, "capabilities": {},
                "initializationOptions": {"model": str(tmp_path / "none")}}}))
            data = b""
            while b"capabilities" not in data:
                chunk = second.recv(4096)
                assert chunk, "connection closed without an answer"
                data += chunk
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(5)


def test_after_all_the_abuse_the_server_still_completes_and_shuts_down_cleanly(checkpoint, server):
    normal_request_works(server)
    assert server.close() == 0  # shutdown + exit: a clean exit, in bounded time
