"""Which completion requests reach the model: the newest request for a document cancels the older
one (at its next decode step), an optional debounce waits for typing to pause, and a rate limit
(asyncio-throttle) bounds how many model requests start per second.

A background request (a prefetch where the cursor came to rest: lsp_server.prefetch) has the lowest
priority: it only starts when no request is running, there is one at a time, and any request (for
any document) cancels it."""

from __future__ import annotations

import asyncio
import itertools
import threading
from dataclasses import dataclass, field

from asyncio_throttle import Throttler


@dataclass
class Ticket:
    uri: str
    seq: int
    cancel: threading.Event = field(default_factory=threading.Event)
    superseded: bool = False
    background: bool = False
    job_events: list[threading.Event] = field(default_factory=list)

    def new_job_event(self) -> threading.Event:
        """A cancel event for one model run of this request (set when the request is cancelled)."""
        event = threading.Event()
        if self.cancel.is_set():
            event.set()
        self.job_events.append(event)
        return event

    def cancel_jobs(self) -> None:
        self.cancel.set()
        for event in self.job_events:
            event.set()


class RequestScheduler:
    def __init__(self, rate_limit: float = 20.0, debounce_ms: int = 0) -> None:
        self._seq = itertools.count(1)
        self._current: dict[str, Ticket] = {}
        self._background: Ticket | None = None
        self.configure(rate_limit, debounce_ms)

    def configure(self, rate_limit: float, debounce_ms: int) -> None:
        self.debounce_ms = debounce_ms
        # Throttler counts whole requests per period: express a fractional rate over a longer period.
        per = 1.0
        while rate_limit * per < 1:
            per *= 10
        self._throttler = Throttler(rate_limit=max(1, int(rate_limit * per)), period=per)

    def begin(self, uri: str) -> Ticket:
        """A new request for `uri`: the one before it (if still running) is cancelled, and so is a
        background request for any document."""
        ticket = Ticket(uri, next(self._seq))
        old = self._current.get(uri)
        if old is not None:
            old.superseded = True
            old.cancel_jobs()
        self._cancel_background()
        self._current[uri] = ticket
        return ticket

    def begin_background(self, uri: str) -> Ticket | None:
        """A background request for `uri`, replacing the previous one; None while any request runs."""
        if self._current:
            return None
        self._cancel_background()
        self._background = Ticket(uri, next(self._seq), background=True)
        return self._background

    def _cancel_background(self) -> None:
        if self._background is not None:
            self._background.superseded = True
            self._background.cancel_jobs()
            self._background = None

    def is_current(self, ticket: Ticket) -> bool:
        held = self._background if ticket.background else self._current.get(ticket.uri)
        return held is ticket and not ticket.cancel.is_set()

    async def admit(self, ticket: Ticket) -> bool:
        """Wait for the debounce and the rate limit; False when the request is no longer wanted. A
        background request has been debounced by its client and does not count against the limit."""
        if ticket.background:
            return self.is_current(ticket)
        if self.debounce_ms > 0:
            await asyncio.sleep(self.debounce_ms / 1000)
            if not self.is_current(ticket):
                return False
        async with self._throttler:
            pass
        return self.is_current(ticket)

    def end(self, ticket: Ticket) -> None:
        if ticket.background:
            if self._background is ticket:
                self._background = None
        elif self._current.get(ticket.uri) is ticket:
            del self._current[ticket.uri]

    def cancel_document(self, uri: str) -> None:
        ticket = self._current.pop(uri, None)
        if ticket is not None:
            ticket.cancel_jobs()
        if self._background is not None and self._background.uri == uri:
            self._cancel_background()

    def cancel_all(self) -> None:
        for uri in list(self._current):
            self.cancel_document(uri)
        self._cancel_background()
