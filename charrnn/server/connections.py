"""Connections that make no request must not take the room of those that do.

uvicorn's own bound (``limit_concurrency``) counts open connections, so a few dozen idle sockets made
every real request get its plain-text 503. Here idle connections cost nothing but a file descriptor,
and are bounded instead:

- a connection has ``read_timeout`` seconds to send a whole request head, counted from when it
  connected or from the end of its previous answer (a byte now and then does not extend it); then
  it is closed;
- at most ``max_connections`` are open: one more closes the connection idle the longest (no request
  under way: never sent one, part of a head, or kept alive after an answer). When every connection is
  in the middle of a request, the newcomer's request gets the JSON 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio

import h11
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the bounds above; :func:`guarded_protocol` sets them."""

    read_timeout: float = 10.0
    max_connections: int = 1000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._idle_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()
        if len(self.connections) > self.max_connections and not self._evict_idlest():
            self.app = self._busy

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    @property
    def idle(self) -> bool:
        """No request is under way: the client has sent nothing, or part of a request head, since it
        connected or got its last answer."""
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self.idle_since = self.loop.time()
        self._idle_timer = self.loop.call_later(self.read_timeout, self._expire)

    def _disarm(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _expire(self) -> None:
        self._idle_timer = None
        if self.idle:
            self.close()

    def close(self) -> None:
        if not self.transport.is_closing():
            try:
                self.conn.send(h11.ConnectionClosed())
            except h11.LocalProtocolError:
                pass
            self.transport.close()

    def _evict_idlest(self) -> bool:
        idle = [c for c in self.connections
                if c is not self and isinstance(c, GuardedH11Protocol) and c.idle and not c.transport.is_closing()]
        if not idle:
            return False
        min(idle, key=lambda c: c.idle_since).close()
        return True

    async def _busy(self, scope: Scope, receive: Receive, send: Send) -> None:
        reply = JSONResponse({"message": f"all {self.max_connections} connections are in use by requests "
                                         "(--max-connections); try again shortly"},
                             status_code=503, headers={"Retry-After": "1", "Connection": "close"})
        await reply(scope, receive, send)


def guarded_protocol(read_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class to give uvicorn (``Config(http=...)``) for these bounds."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"read_timeout": read_timeout, "max_connections": max_connections})
