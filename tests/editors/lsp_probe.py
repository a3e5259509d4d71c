"""A minimal stdio LSP client, used once per session to check that the tiny scripted checkpoint
suggests what it was built to suggest at the spot the editor scenarios type to, before the editors
run: the editor tests assert on that suggestion being shown."""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from typing import Any

# The editor scenarios: this file, with TYPED typed on its third line, cursor at the end.
SCENARIO_TEXT = "import os\n\n\n"
TYPED = "def add(a, b):"
TEST_OPTIONS = {"device": "cpu", "maxNewTokensSingleLine": 16, "maxNewTokensMultiLine": 16}


class LspProbe:
    def __init__(self, command: list[str], timeout_s: float = 60.0):
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.ids = itertools.count(1)
        self.deadline = time.monotonic() + timeout_s

    def _send(self, message: dict) -> None:
        body = json.dumps(message).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _read(self) -> dict:
        length = 0
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the server closed its output")
            line = line.strip()
            if not line:
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return json.loads(self.proc.stdout.read(length))

    def request(self, method: str, params: Any) -> Any:
        rid = next(self.ids)
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        while time.monotonic() < self.deadline:
            message = self._read()
            if "method" in message:  # the server's own requests (progress, ...): answer null
                if "id" in message:
                    self._send({"jsonrpc": "2.0", "id": message["id"], "result": None})
                continue
            if message.get("id") == rid:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result")
        raise TimeoutError(f"{method}: no answer in time")

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def close(self) -> None:
        try:
            self.request("shutdown", None)
            self.notify("exit", None)
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - best effort; kill below
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def scenario_suggestion(command: list[str], model: str, timeout_s: float = 60.0) -> str:
    """What the server suggests (Automatic trigger) in the editor scenario with this model."""
    probe = LspProbe(command, timeout_s)
    try:
        probe.request("initialize", {"processId": None, "rootUri": None, "capabilities": {},
                                     "initializationOptions": {"model": model, **TEST_OPTIONS}})
        probe.notify("initialized", {})
        while True:
            model_state = probe.request("workspace/executeCommand", {"command": "infill.stats"})["model"]
            if model_state["status"] == "failed":
                raise RuntimeError(f"model failed to load: {model_state['error']}")
            if model_state["status"] == "ready":
                break
            time.sleep(0.05)
        uri = "file:///infill-probe/add.py"
        text = SCENARIO_TEXT.replace("\n\n\n", f"\n\n{TYPED}\n")
        probe.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                               "text": text}})
        result = probe.request("textDocument/inlineCompletion", {
            "textDocument": {"uri": uri}, "position": {"line": 2, "character": len(TYPED)},
            "context": {"triggerKind": 2}})
        items = result.get("items", []) if isinstance(result, dict) else (result or [])
        return items[0]["insertText"] if items else ""
    finally:
        probe.close()
