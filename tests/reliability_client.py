"""A raw JSON-RPC client for the reliability tests: it speaks bytes to a real server process over
stdio, so tests can send malformed frames, and it keeps every message the server sends back.

Every wait has a timeout; stderr is collected in the background so the server never blocks on it.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER_COMMAND = [sys.executable, "-m", "lsp_server.serve"]
# The test launcher: the real server plus a test-only command that returns a document's text.
TEST_SERVER_COMMAND = [sys.executable, "-m", "tests.reliability_server_main"]


def frame(payload: dict | bytes | str) -> bytes:
    if isinstance(payload, dict):
        payload = json.dumps(payload)
    body = payload.encode("utf-8") if isinstance(payload, str) else payload
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class RawClient:
    """`request` sends and waits for the answer; `send_bytes` writes anything at all."""

    def __init__(self, command=None, args=(), env=None, read=True, proc=None):
        if proc is None:
            full_env = dict(os.environ, PYTHONUNBUFFERED="1")
            full_env.update(env or {})
            proc = subprocess.Popen([*(command or SERVER_COMMAND), *args], cwd=ROOT, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
        self.proc = proc
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        self.responses: dict = {}
        self.arrivals: dict = {}  # response id -> time.monotonic() when it was read
        self.notifications: list[dict] = []
        self.server_requests: list[dict] = []
        self.unparsed: list[bytes] = []
        self._stderr: list[bytes] = []
        self.reading = threading.Event()
        if read:
            self.reading.set()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    # -- writing
    def send_bytes(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, payload) -> None:
        self.send_bytes(frame(payload))

    def notify(self, method: str, params=None) -> None:
        msg = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)

    def request_async(self, method: str, params=None) -> int:
        msg_id = next(self._ids)
        msg = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return msg_id

    def wait_response(self, msg_id, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        with self._lock:
            while msg_id not in self.responses:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and msg_id not in self.responses:
                    raise TimeoutError(f"no response to request {msg_id} within {timeout} s "
                                       f"(server {'exited' if self.proc.poll() is not None else 'running'})\n"
                                       f"stderr tail: {self.stderr[-2000:]}")
                self._lock.wait(min(left, 0.1))
            return self.responses[msg_id]

    def request(self, method: str, params=None, timeout: float = 10.0) -> dict:
        return self.wait_response(self.request_async(method, params), timeout)

    # -- LSP conveniences
    def initialize(self, options=None, encodings=("utf-16",), timeout: float = 20.0) -> dict:
        result = self.request("initialize", {
            "processId": None, "rootUri": None, "initializationOptions": options,
            "capabilities": {"general": {"positionEncodings": list(encodings)},
                             "textDocument": {"inlineCompletion": {}, "completion": {}}}}, timeout)
        self.notify("initialized", {})
        return result

    def open(self, uri: str, text: str, language: str = "python", version: int = 1) -> None:
        self.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": language,
                                                              "version": version, "text": text}})

    def change(self, uri: str, version: int, changes: list[dict]) -> None:
        self.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                               "contentChanges": changes})

    def inline_async(self, uri: str, line: int, character: int, kind: int = 2) -> int:
        return self.request_async("textDocument/inlineCompletion", {
            "textDocument": {"uri": uri}, "position": {"line": line, "character": character},
            "context": {"triggerKind": kind}})

    def inline(self, uri: str, line: int, character: int, timeout: float = 10.0) -> dict:
        return self.wait_response(self.inline_async(uri, line, character), timeout)

    def stats(self, timeout: float = 10.0) -> dict:
        answer = self.request("workspace/executeCommand", {"command": "infill.stats", "arguments": []}, timeout)
        assert "result" in answer, answer
        return answer["result"]

    def wait_model(self, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.stats()
            if s["model"]["status"] in ("ready", "failed"):
                return s
            time.sleep(0.05)
        raise AssertionError("model neither ready nor failed in time")

    def assert_alive(self, timeout: float = 10.0) -> dict:
        """A normal request still gets a normal answer."""
        assert self.proc.poll() is None, f"server exited with {self.proc.returncode}: {self.stderr[-3000:]}"
        return self.stats(timeout)

    def log_messages(self) -> list[str]:
        with self._lock:
            return [n["params"]["message"] for n in self.notifications
                    if n.get("method") in ("window/logMessage", "window/showMessage")]

    def shown_messages(self) -> list[str]:
        with self._lock:
            return [n["params"]["message"] for n in self.notifications if n.get("method") == "window/showMessage"]

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace")

    def close(self, timeout: float = 5.0) -> int | None:
        """shutdown + exit, then wait (bounded) for the process; kills it if it lingers."""
        try:
            if self.proc.poll() is None:
                self.request("shutdown", None, timeout)
                self.notify("exit")
                self.proc.stdin.close()
        except (OSError, TimeoutError, ValueError):
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- reading
    def _read_stdout(self) -> None:
        out = self.proc.stdout
        while True:
            self.reading.wait()
            length = None
            while True:
                line = out.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("ascii", "replace").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length is None:
                continue
            body = out.read(length)
            try:
                msg = json.loads(body)
            except ValueError:
                with self._lock:
                    self.unparsed.append(body)
                continue
            with self._lock:
                if "id" in msg and "method" not in msg:
                    self.responses[msg["id"]] = msg
                    self.arrivals[msg["id"]] = time.monotonic()
                elif "id" in msg:
                    self.server_requests.append(msg)
                    self._answer_server_request(msg)
                else:
                    self.notifications.append(msg)
                self._lock.notify_all()

    def _answer_server_request(self, msg: dict) -> None:
        # window/workDoneProgress/create, client/registerCapability, workspace/configuration...
        result = [] if msg["method"] == "workspace/configuration" else None
        try:
            self.send({"jsonrpc": "2.0", "id": msg["id"], "result": result})
        except OSError:
            pass

    def _read_stderr(self) -> None:
        for line in iter(self.proc.stderr.readline, b""):
            self._stderr.append(line)
