"""stdin for pygls' stdio loop with bounds: a header line is read at most MAX_HEADER_LINE bytes at
a time, and a body is read in chunks up to MAX_MESSAGE_BYTES. A bogus Content-Length (say 100 GB)
would otherwise make pygls allocate it in one `read(n)` and die with MemoryError; here such a frame
is dropped with one log line and the stream carries on from the next header."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 512 * 2**20
MAX_HEADER_LINE = 64 * 2**10
CHUNK = 2**20
# What pygls gets instead of an oversized body: a notification nobody handles (ignored with a warning).
DROPPED = b'{"jsonrpc": "2.0", "method": "$/infill-ls/droppedOversizedMessage", "params": null}'


class BoundedStdin:
    def __init__(self, raw, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.raw = raw
        self.max_message_bytes = max_message_bytes

    def readline(self) -> bytes:
        return self.raw.readline(MAX_HEADER_LINE)

    def read(self, n: int) -> bytes:
        if n > self.max_message_bytes:
            log.error("dropped a message: Content-Length %d is over the limit of %d bytes", n,
                      self.max_message_bytes)
            return DROPPED
        parts, left = [], n
        while left > 0:
            part = self.raw.read(min(left, CHUNK))
            if not part:
                break
            parts.append(part)
            left -= len(part)
        return b"".join(parts)
