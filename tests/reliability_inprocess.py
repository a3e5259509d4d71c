"""An in-process server for fault injection: the real InfillServer (build_server) runs its stdio
loop on a thread over OS pipes, and a RawClient talks to it, so tests can monkeypatch the model,
the loader or the worker of the very server they are talking to."""

from __future__ import annotations

import io
import os
import threading

from lsp_server.server import build_server
from tests.reliability_client import RawClient


class ThreadProcess:
    """The little of subprocess.Popen that RawClient uses, for a server running on a thread."""

    def __init__(self, target, stdin, stdout) -> None:
        self.stdin, self.stdout, self.stderr = stdin, stdout, io.BytesIO(b"")
        self.returncode = None
        self.thread = threading.Thread(target=target, name="in-process-server", daemon=True)
        self.thread.start()

    def poll(self):
        return None if self.thread.is_alive() else 0

    def wait(self, timeout=None):
        self.thread.join(timeout)
        if self.thread.is_alive():
            import subprocess

            raise subprocess.TimeoutExpired("in-process server", timeout)
        self.returncode = 0
        return 0

    def kill(self) -> None:  # the thread ends when its stdin closes
        self.stdin.close()


class InProcessServer:
    def __init__(self) -> None:
        self.server = build_server()
        c2s_r, c2s_w = os.pipe()
        s2c_r, s2c_w = os.pipe()
        server_in, server_out = os.fdopen(c2s_r, "rb"), os.fdopen(s2c_w, "wb")

        def run():
            try:
                self.server.start_io(server_in, server_out)
            finally:
                if self.server.worker is not None:  # made at initialize
                    self.server.worker.shutdown(timeout=2.0)
                for f in (server_in, server_out):
                    try:
                        f.close()
                    except OSError:
                        pass

        self.client = RawClient(proc=ThreadProcess(run, os.fdopen(c2s_w, "wb"), os.fdopen(s2c_r, "rb")))

    def close(self) -> None:
        try:
            self.client.proc.stdin.close()  # EOF: the server's loop ends
        except OSError:
            pass
        self.client.proc.wait(10)
