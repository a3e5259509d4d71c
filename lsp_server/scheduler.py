"""Which completion requests reach the model: the newest request for a document cancels the older
one (at its next decode step), an optional debounce waits for typing to pause, and a rate limit
(asyncio-throttle) bounds how many model requests start per second."""

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
        self.configure(rate_limit, debounce_ms)

    def configure(self, rate_limit: float, debounce_ms: int) -> None:
        self.debounce_ms = debounce_ms
        # Throttler counts whole requests per period: express a fractional rate over a longer period.
        per = 1.0
        while rate_limit * per < 1:
            per *= 10
        self._throttler = Throttler(rate_limit=max(1, int(rate_limit * per)), period=per)

    def begin(self, uri: str) -> Ticket:
        """A new request for `uri`: the one before it (if still running) is cancelled."""
        ticket = Ticket(uri, next(self._seq))
        old = self._current.get(uri)
        if old is not None:
            old.superseded = True
            old.cancel_jobs()
        self._current[uri] = ticket
        return ticket

    def is_current(self, ticket: Ticket) -> bool:
        return self._current.get(ticket.uri) is ticket and not ticket.cancel.is_set()

    async def admit(self, ticket: Ticket) -> bool:
        """Wait for the debounce and the rate limit; False when the request is no longer wanted."""
        if self.debounce_ms > 0:
            await asyncio.sleep(self.debounce_ms / 1000)
            if not self.is_current(ticket):
                return False
        async with self._throttler:
            pass
        return self.is_current(ticket)

    def end(self, ticket: Ticket) -> None:
        if self._current.get(ticket.uri) is ticket:
            del self._current[ticket.uri]

    def cancel_document(self, uri: str) -> None:
        ticket = self._current.pop(uri, None)
        if ticket is not None:
            ticket.cancel_jobs()

    def cancel_all(self) -> None:
        for uri in list(self._current):
            self.cancel_document(uri)
