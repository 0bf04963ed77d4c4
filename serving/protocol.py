"""uvicorn's h11 protocol with a request-header timeout, which uvicorn does not have (slowloris).

A connection has ``header_timeout`` seconds from being opened, and a keep-alive connection
from the first byte of each next request, to send complete request headers; then it is
closed. uvicorn's ``timeout_keep_alive`` bounds the idle time between requests and
``limit_concurrency`` the connections; bodies are bounded by the body budget
(:class:`~detpipe.serving.bodies.BodyBudget`)::

    uvicorn.run(app, http=header_timeout_protocol(10.0), timeout_keep_alive=5, limit_concurrency=128)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


class HeaderTimeoutProtocol(H11Protocol):
    """:class:`H11Protocol` that closes a connection whose request headers take too long."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:  # bytes of a new request: its clock starts now
            self._arm()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # its headers are complete
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.info("closing %s: no complete request headers within %g s", self.client, self.header_timeout)
            self.transport.close()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for ``uvicorn.run(http=...)`` with a ``seconds`` header timeout."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})
