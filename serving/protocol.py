"""uvicorn's httptools protocol with a request-header timeout, which uvicorn does not have (slowloris).

A connection has ``header_timeout`` seconds from being opened, and a keep-alive connection
from the first byte of each next request, to send complete request headers; then it is
closed. A request whose line and headers pass ``MAX_HEADER_BYTES`` (counted per socket read,
so at most one read more) gets 431 and the connection is
closed (llhttp itself sets no bound; h11 had 16 KiB). uvicorn's ``timeout_keep_alive``
bounds the idle time between requests and ``limit_concurrency`` the connections; bodies
are bounded by the body budget (:class:`~detpipe.serving.bodies.BodyBudget`)::

    uvicorn.run(app, http=header_timeout_protocol(10.0), timeout_keep_alive=5, limit_concurrency=128)

httptools (llhttp, Node.js's C parser) rather than uvicorn's pure-Python h11: h11 copies
each body chunk into its receive buffer and out again, and parses in Python; on an OIP
binary request at 320 px (1.2 MB in, 0.7 MB out) httptools takes about 0.4 ms less a
request (docs/BENCHMARKS.md, "Where the server's time goes").
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024
"""The most bytes of request line and headers a request may have (h11's default in uvicorn)."""


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that closes a connection whose request headers take too long."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True  # from the connection's start, and each request's first byte
        self._header_bytes = 0  # bytes received while the headers are incomplete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:  # the first byte of a request: its clock starts now
        self._awaiting_headers = True
        self._arm()
        super().on_message_begin()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._awaiting_headers and not self.transport.is_closing():  # llhttp buffers them meanwhile
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._refuse_headers()

    def _refuse_headers(self) -> None:
        msg = f"request line and headers over {MAX_HEADER_BYTES} bytes"
        log.info("closing %s: %s", self.client, msg)
        self.transport.write(
            b"".join((STATUS_LINE[431], b"content-type: text/plain; charset=utf-8\r\n",
                      b"content-length: %d\r\nconnection: close\r\n\r\n" % len(msg), msg.encode()))
        )  # fmt: skip
        self.transport.close()

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        self._disarm()
        super().on_headers_complete()

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
        if self._awaiting_headers and not self.transport.is_closing():
            log.info("closing %s: no complete request headers within %g s", self.client, self.header_timeout)
            self.transport.close()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for ``uvicorn.run(http=...)`` with a ``seconds`` header timeout."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})
