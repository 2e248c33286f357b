"""Every error the API returns is JSON: ``{"error": "<one sentence for a person>", "detail": <data or null>}``.

Status codes:

- 400 malformed request the other handlers do not cover (a multipart body that does not parse)
- 401 no or unknown token (with ``WWW-Authenticate: Bearer``); 403 role too low, or a path that
  leaves the data roots / a job's artifact folder (the request is understood and refused)
- 404 unknown job, model, artifact or image; 409 a request that does not fit the job (results of a
  train job)
- 413 a body over ``max_config_kb`` (JSON requests), a config over the limits once parsed (depth,
  values, resolved size), an uploaded file over ``max_upload_mb``, or too many files
- 415 an upload that is not an image (checked by content), or a body of the wrong media type
- 422 a config or request that fails validation: segpipe's message names the key; also values the
  database cannot hold (NUL characters, integers past 64 bits) and JSON nested too deeply to parse
- 500 anything unexpected: logged with its traceback, answered without it; 503 the broker did not take a
  submitted job (the job is then marked failed)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from segpipe.errors import ConfigError, DataError, NotFoundError, SegpipeError
from segpipe.paths import PathNotAllowed
from segpipe.safe_yaml import DocumentTooLarge
from segpipe.service import BrokerUnavailable
from segpipe.stores.artifacts import ArtifactPathError

log = logging.getLogger("segpipe.api")


class ApiError(HTTPException):
    """An error answered as ``{"error": message, "detail": detail}`` with ``status_code``.

    A subclass of Starlette's HTTPException so that one raised while FastAPI reads the body (the
    body-size limit) reaches the handlers instead of becoming a generic 400.
    """

    def __init__(
        self, status_code: int, message: str, detail: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.message = message
        self.extra = detail


def error_response(
    status_code: int, message: str, detail: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message, "detail": detail}, status_code=status_code, headers=headers)


# Most specific first: PathNotAllowed is a ConfigError, ArtifactPathError a SegpipeError.
_SEGPIPE_STATUS: tuple[tuple[type[SegpipeError], int], ...] = (
    (PathNotAllowed, 403),
    (ArtifactPathError, 403),
    (BrokerUnavailable, 503),
    (DocumentTooLarge, 413),
    (NotFoundError, 404),
    (ConfigError, 422),
    (DataError, 422),
    (SegpipeError, 400),
)


def status_for(exc: SegpipeError) -> int:
    """The HTTP status of a segpipe exception (see the module docstring)."""
    return next(status for cls, status in _SEGPIPE_STATUS if isinstance(exc, cls))


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(request)"


def describe_validation(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """A one-line message naming every bad field, and the errors as plain JSON (loc, msg, type)."""
    plain = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors
    ]
    message = "invalid request: " + "; ".join(f"{_location(tuple(e['loc']))}: {e['msg']}" for e in plain)
    return message, plain


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, including FastAPI's own 404/405/422 and unexpected ones, the JSON shape above."""

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc, ApiError):
            return error_response(exc.status_code, exc.message, exc.extra, exc.headers)
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        headers = exc.headers
        if exc.status_code == 405:
            # Starlette names only the first route that matched the path; Allow must list them all
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(app, request))}
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint; see /docs for the API"
        elif exc.status_code == 400 and message == "There was an error parsing the body":
            message = "the request body does not parse (not JSON, not UTF-8, or nested too deeply)"
        elif exc.status_code == 405:
            message = "method not allowed on this endpoint; see /docs for the API"
        return error_response(exc.status_code, message, None, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, plain = describe_validation(list(exc.errors()))
        return error_response(422, message, plain)

    @app.exception_handler(SegpipeError)
    async def _segpipe(_request: Request, exc: SegpipeError) -> JSONResponse:
        return error_response(status_for(exc), str(exc), {"type": type(exc).__name__})

    @app.exception_handler(sqlalchemy.exc.DataError)
    async def _database_value(request: Request, exc: sqlalchemy.exc.DataError) -> JSONResponse:
        # The database refused a value from the request (PostgreSQL: NUL in text, integer out of range).
        from segpipe.stores.db_errors import explain

        log.info("%s %s: database refused a value: %s", request.method, request.url.path, exc.orig)
        return error_response(422, f"a value in the request cannot be stored or looked up: {explain(exc)}",
                              {"type": "DataError"})

    @app.exception_handler(OverflowError)
    async def _overflow(_request: Request, exc: OverflowError) -> JSONResponse:
        return error_response(422, f"a number in the request is out of range ({exc})", {"type": "OverflowError"})

    @app.exception_handler(RecursionError)
    async def _too_deep(_request: Request, _exc: RecursionError) -> JSONResponse:
        return error_response(422, "the request body is nested too deeply", {"type": "RecursionError"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal server error; the server log has the details", None)


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route serves on the request's path (for a 405's ``Allow`` header)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in _leaf_routes(app.router.routes):
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def _leaf_routes(routes: Any) -> Any:  # Starlette/FastAPI route objects
    """The routes themselves, looking inside included routers (our routers carry their own prefix)."""
    for route in routes:
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        if inner is not None:
            yield from _leaf_routes(inner)
        elif hasattr(route, "matches"):
            yield route


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``limit`` bytes with 413, before the app parses them.

    Checked twice: against ``Content-Length`` before anything is read, and by counting the bytes
    actually received (a chunked body has no length). Paths in ``exempt`` enforce their
    own limits while streaming, e.g. uploads, whose files may be far larger than a config.
    Paths under a prefix of ``prefix_limits`` get that prefix's (limit, what) instead.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        what: str,
        exempt: frozenset[str] = frozenset(),
        prefix_limits: dict[str, tuple[int, str]] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.what = what
        self.exempt = exempt
        self.prefix_limits = prefix_limits or {}

    def _error(self, limit: int, what: str) -> ApiError:
        return ApiError(413, f"request body is larger than the {what} limit of {limit} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        limit, what = self.limit, self.what
        for prefix, (prefix_limit, prefix_what) in self.prefix_limits.items():
            if scope["path"].startswith(prefix):
                limit, what = prefix_limit, prefix_what
        length = _content_length(scope)
        if length is not None and length > limit:
            err = self._error(limit, what)
            await error_response(413, err.message)(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the app's body read: FastAPI re-raises HTTPExceptions, and the
                    # app's handler answers it as JSON.
                    raise self._error(limit, what)
            return message

        await self.app(scope, counting_receive, send)


class NulRefusingMiddleware:
    """Answer 422 to a URL whose path or query holds a NUL character (``%00``), before any route runs.

    No id, name or key of ours can contain one, and PostgreSQL cannot even compare text with it:
    refusing it here keeps every route, present and future, from passing it to the database.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            from urllib.parse import unquote_to_bytes

            raw = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
            query = scope.get("query_string", b"")
            if b"\x00" in unquote_to_bytes(raw) or b"\x00" in unquote_to_bytes(query.replace(b"+", b" ")) \
                    or "\x00" in scope.get("path", ""):
                response = error_response(422, "the URL contains a NUL character (%00); no id or name can hold one")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
