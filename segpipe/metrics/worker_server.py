"""A worker's ``/metrics``: a small HTTP server on its own port, in a daemon thread of the worker process.

Each worker process is one Prometheus target (with ``--gpus`` each GPU's process gets the next port), the
way Prometheus expects one target per process it can reach. A scrape must send
``Authorization: Bearer <SEGPIPE_METRICS_TOKEN>``; anything else gets 401. Only ``GET /metrics`` exists.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from segpipe.metrics.exposition import scrape

log = logging.getLogger("segpipe.metrics")
# A scrape's request line and headers must arrive within this many seconds (slow clients hold no thread).
REQUEST_TIMEOUT_S = 10.0


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _json(start_response: Callable[..., Any], status: str, message: str, extra: list[tuple[str, str]] = []) -> list[bytes]:  # noqa: B006
    body = json.dumps({"error": message, "detail": {}}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra])
    return [body]


def metrics_app(token: str | None, collectors: Iterable[object]) -> Callable[..., list[bytes]]:
    """The WSGI app: ``GET /metrics`` with the bearer ``token`` (None: no token asked, auth is off)."""
    from prometheus_client import CONTENT_TYPE_LATEST

    extra = list(collectors)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            return _json(start_response, "404 Not Found", "only GET /metrics is served here")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _json(start_response, "405 Method Not Allowed", "only GET /metrics is served here")
        if token is not None:
            scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
                return _json(start_response, "401 Unauthorized", "send 'Authorization: Bearer <SEGPIPE_METRICS_TOKEN>'",
                             [("WWW-Authenticate", "Bearer")])
        body = scrape(extra)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return [body]

    return app


def start_metrics_server(host: str, port: int, token: str | None, collectors: Iterable[object]) -> WSGIServer:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread; returns the server (``shutdown()`` stops it)."""
    server = make_server(host, port, metrics_app(token, collectors), _ThreadingServer, _QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s:%d/metrics", host, server.server_port)
    return server
