"""A bare LSP client over a server's stdio (Content-Length framing) for the benchmarks: no library and
no infill-ls code in the way, so it drives any version of the server (`PYTHONPATH=OTHER_TREE`).

    client = LspClient([sys.executable, "-m", "lsp_server.serve"], env)
    client.request("initialize", {...}); client.notify("initialized", {})
    rss, peak = client.rss_mb()
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path


class LspClient:
    def __init__(self, command: list[str], env: dict, cwd: str | None = None) -> None:
        self.t0 = time.monotonic()  # when the server process was started
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, cwd=cwd)
        self.next_id = 0
        self.buf = b""

    def send(self, msg: dict) -> None:
        body = json.dumps(msg).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def notify(self, method: str, params) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params, timeout: float = 120.0):
        """The result of `method` (RuntimeError for an error answer); requests from the server meanwhile
        (progress create...) are answered with null."""
        self.next_id += 1
        rid = self.next_id
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        while True:
            msg = self._read_message(timeout)
            if msg.get("id") == rid and "method" not in msg:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result")
            if "method" in msg and "id" in msg:
                self.send({"jsonrpc": "2.0", "id": msg["id"], "result": None})

    def _read_message(self, timeout: float) -> dict:
        end = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if sep:
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                if len(rest) >= length:
                    self.buf = rest[length:]
                    return json.loads(rest[:length])
            left = end - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("no answer from the server")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("the server closed its stdout")
            self.buf += chunk

    def rss_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) of the server in MB."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

    def close(self) -> None:
        try:
            self.request("shutdown", None, timeout=10)
            self.notify("exit", None)
            self.proc.wait(10)
        except Exception:  # noqa: BLE001 - a server that does not stop is killed
            self.proc.kill()
            self.proc.wait()
