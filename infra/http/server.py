"""How `caselog serve` holds its HTTP connections: uvicorn's h11 protocol with the two read timeouts
uvicorn lacks (it has only the keep-alive one), so a slow or stalled client cannot keep a
connection, and its share of the server, for ever.

- header timeout: a request's headers must be complete within this many seconds of the connection
  opening (or of the first byte of a next request on a kept-alive connection);
- body timeout: a request body that has started must not go this long without a byte arriving,
  and once it has been arriving that long, must average at least 1 KiB/s (a drip is a stall too).
  Time the server itself stops reading (its buffer is full because the application is busy, or the
  client waits for ``100 Continue``) is not taken for a stall.

A connection past either is closed."""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class TimedH11Protocol(H11Protocol):
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    min_body_rate = 1024  # bytes/s a body must average once it has been arriving for body_timeout seconds

    @classmethod
    def with_timeouts(cls, header: float, body: float) -> type[TimedH11Protocol]:
        """The protocol class to give uvicorn (``http=``) for these timeouts, in seconds."""
        return type(cls.__name__, (cls,), {"header_timeout": header, "body_timeout": body})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.header_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        self.body_started: float | None = None
        self.body_bytes = 0
        super().connection_made(transport)
        self.header_timer = self.loop.call_later(self.header_timeout, self.headers_late)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        if state is not h11.SEND_BODY:
            self.body_started = None
            self.stop(body=True)
        if state is h11.IDLE:  # a request's headers still to come
            if self.header_timer is None:
                self.header_timer = self.loop.call_later(self.header_timeout, self.headers_late)
            return
        self.stop(header=True)
        if state is h11.SEND_BODY:
            self.body_arrived(len(data))

    def body_arrived(self, size: int) -> None:
        """Body bytes came: the body has not stalled; but a drip below ``min_body_rate`` is closed too."""
        self.stop(body=True)
        now = self.loop.time()
        if self.body_started is None:
            self.body_started, self.body_bytes = now, 0
        self.body_bytes += size
        elapsed = now - self.body_started
        if elapsed > self.body_timeout and self.body_bytes < self.min_body_rate * elapsed:
            self.close(f"request body slower than {self.min_body_rate} bytes/s after {self.body_timeout:g} s")
            return
        self.body_timer = self.loop.call_later(self.body_timeout, self.body_stalled)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop(header=True, body=True)
        super().connection_lost(exc)

    def stop(self, *, header: bool = False, body: bool = False) -> None:
        if header and self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        if body and self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None

    def headers_late(self) -> None:
        self.header_timer = None
        if self.conn.their_state is h11.IDLE:
            self.close(f"no complete request headers within {self.header_timeout:g} s")

    def body_stalled(self) -> None:
        self.body_timer = None
        if self.conn.their_state is not h11.SEND_BODY:
            return
        if self.flow.read_paused or (self.cycle is not None and self.cycle.waiting_for_100_continue):
            self.body_timer = self.loop.call_later(self.body_timeout, self.body_stalled)  # our wait, not theirs
            return
        self.close(f"request body stalled for {self.body_timeout:g} s")

    def close(self, reason: str) -> None:
        if not self.transport.is_closing():
            self.logger.debug("%s:%d - closing: %s", *(self.client or ("?", 0)), reason)
            self.transport.close()
