"""stdout for pygls' stdio loop that drops writes once it is closed.

pygls closes stdout on the `exit` notification, while an answer to a request still in flight (or a log
line from the worker as it stops) may follow a moment later. Written to a closed file, that would raise
in pygls' sender, which logs a traceback and reports the failure (itself sent to the client, failing
again). After `close`, writes are dropped silently instead: nobody is listening any more."""

from __future__ import annotations


class QuietStdout:
    def __init__(self, raw) -> None:
        self.raw = raw
        self.closed = False

    def write(self, data: bytes) -> int:
        if self.closed:
            return 0
        return self.raw.write(data)

    def flush(self) -> None:
        if not self.closed:
            self.raw.flush()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.raw.close()
