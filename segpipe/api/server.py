"""Serving the API with uvicorn, with the timeouts a public server needs (``segpipe api``).

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive`` seconds, but it has no timeout
for reading a request's headers: a client that sends one header byte every few seconds (a slow-loris
client) holds its connection, and with enough of them every connection, forever. The protocol classes
here add that timeout to uvicorn's own HTTP/1.1 implementations (h11 and httptools): from a connection's
first byte, or the first byte of its next request, the request line and headers must be complete within
``SEGPIPE_HTTP_HEADER_TIMEOUT`` seconds, else the server answers 408 and closes the connection. A
connection that sends nothing at all is closed after the same time. uvicorn's keep-alive timeout is set
from ``SEGPIPE_HTTP_KEEP_ALIVE_TIMEOUT``.

Running uvicorn directly, name the class and the keep-alive timeout yourself::

    uvicorn segpipe.api.app:create_app --factory --http segpipe.api.server:HttpToolsHeaderTimeout \\
        --timeout-keep-alive 5
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from segpipe.settings import Settings, get_settings

log = logging.getLogger("segpipe.api")
# h11's default; also what uvicorn's httptools path allows per request head. Named so it is documented.
MAX_HEADER_BYTES = 16 * 1024
_TIMEOUT_BODY = b'{"error": "request headers not received in time", "detail": {}}'
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)


class _HeaderTimeout:
    """Mixed into a uvicorn HTTP protocol: a deadline for each request's line and headers."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: tuple[str, int] | None

    def _init_header_timeout(self) -> None:
        self.header_timeout = get_settings().http_header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True

    def _arm_header_timer(self) -> None:
        if self._header_timer is None and self._awaiting_headers:
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _headers_complete(self) -> None:
        self._awaiting_headers = False
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _next_request(self) -> None:
        """A response went out: the next request's headers get a fresh deadline from their first byte."""
        self._awaiting_headers = True

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.info("closing the connection from %s: request headers not complete after %s s", peer, self.header_timeout)
        self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


class _HeaderTimeoutProtocol(_HeaderTimeout):
    """The hooks both uvicorn protocols share; mixed in before the protocol class, so ``super()`` is it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_header_timeout()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        self._arm_header_timer()
        super().data_received(data)  # type: ignore[misc]

    def on_response_complete(self) -> None:
        self._next_request()
        super().on_response_complete()  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_complete()
        super().connection_lost(exc)  # type: ignore[misc]


class H11HeaderTimeout(_HeaderTimeoutProtocol, H11Protocol):
    """uvicorn's h11 protocol with a request-header timeout."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # h11 has parsed a whole request head
            self._headers_complete()


class HttpToolsHeaderTimeout(_HeaderTimeoutProtocol, HttpToolsProtocol):
    """uvicorn's httptools protocol with a request-header timeout."""

    def on_headers_complete(self) -> None:
        self._headers_complete()
        super().on_headers_complete()


def protocol_class() -> str:
    """httptools where it is installed (faster, as uvicorn's ``--http auto`` would pick), else h11."""
    if importlib.util.find_spec("httptools") is not None:
        return "segpipe.api.server:HttpToolsHeaderTimeout"
    return "segpipe.api.server:H11HeaderTimeout"


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The timeouts, limits and log format `serve` hands to uvicorn (also what to pass when running it yourself)."""
    from segpipe.logs import uvicorn_log_config

    options: dict[str, Any] = {
        "http": protocol_class(),
        "timeout_keep_alive": settings.http_keep_alive_timeout,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }
    log_config = uvicorn_log_config(settings.log_format)
    if log_config is not None:
        options["log_config"] = log_config
    return options


def serve(host: str, port: int, workers: int, settings: Settings | None = None) -> None:
    """Check the database answers (one line naming it if not), then serve the API in ``workers`` processes.

    The processes share their metrics through prometheus_client's multiprocess mode (a folder under
    ``SEGPIPE_HOME``, emptied here), so any one of them answers ``/metrics`` for all.
    """
    import uvicorn

    from segpipe.stores.db import Store

    settings = settings or get_settings()
    Store.from_url(settings.db_url).dispose()  # migrates once, before the workers start
    uvicorn.run("segpipe.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="info", **uvicorn_options(settings))
