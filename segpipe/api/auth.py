"""Bearer-token authentication and role checks: annotator < engineer < admin.

Tokens come from ``SEGPIPE_TOKENS`` (``token:role,token:role``). A request without a token, or with
one that is not configured, gets 401 with ``WWW-Authenticate: Bearer``; a known token whose role is
below what the endpoint needs gets 403.

With no tokens configured the API refuses to start, unless ``SEGPIPE_AUTH=off``: the local demo
mode, in which every request acts as admin but only loopback clients (127.0.0.0/8, ::1) are
served, so a server started that way by mistake on a public interface exposes nothing. (Behind a
reverse proxy on the same host every client looks like loopback: never run auth off behind one.)

The review pages (`segpipe.api.pages`) log in with a token once; the browser then holds a server-side
session (`segpipe.stores.page_sessions`): the HttpOnly, SameSite=Strict cookie carries a random session
id, never the token. The session expires (``SEGPIPE_PAGE_SESSION_HOURS``), logout revokes it, and
removing its token from ``SEGPIPE_TOKENS`` ends it. A session id is not a token: sent as a bearer token
it gets 401. The cookie is accepted on safe methods only (GET, HEAD): everything that changes state
still needs the ``Authorization`` header, which a cross-site form or link cannot send, so the cookie
opens no CSRF hole. Tokens never appear in URLs (and so never in access logs).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from segpipe.api.errors import ApiError
from segpipe.errors import ConfigError
from segpipe.settings import ROLES, Settings
from segpipe.stores.page_sessions import PageSessionStore

log = logging.getLogger("segpipe.api")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
SESSION_COOKIE = "segpipe_session"
SAFE_METHODS = frozenset({"GET", "HEAD"})
# Declares the scheme in the OpenAPI document; errors are raised here, in our JSON shape.
bearer_scheme = HTTPBearer(auto_error=False, description="a token from SEGPIPE_TOKENS")


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``name`` identifies the token without revealing it (stored as ``submitted_by``)."""

    role: str
    name: str

    def has(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def token_digest(token: str) -> str:
    """The SHA-256 of a token: how tokens are kept in memory and how a page session names its token."""
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    """Maps a presented token to a `Principal`. Tokens are kept only as SHA-256 digests: a lookup
    by digest takes the same time whatever the token's prefix, so timing reveals nothing about it."""

    def __init__(self, tokens: dict[str, str], enabled: bool = True) -> None:
        for role in tokens.values():
            if role not in ROLE_RANK:
                raise ConfigError(f"API token role {role!r} is unknown; roles: {', '.join(ROLES)}")
        if enabled and not tokens:
            raise ConfigError(
                "the API has no tokens: set SEGPIPE_TOKENS='token:role,…' (roles: "
                f"{', '.join(ROLES)}), or SEGPIPE_AUTH=off for a local demo served to 127.0.0.1 only"
            )
        self.enabled = enabled
        self._by_digest = {token_digest(token): role for token, role in tokens.items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        auth = cls(dict(settings.tokens), enabled=settings.auth != "off")
        if not auth.enabled:
            log.warning("SEGPIPE_AUTH=off: no authentication; serving loopback clients only, all as admin")
        return auth

    def authenticate(self, token: str | None, client_host: str | None) -> Principal:
        """The caller, or `ApiError` 401 (no / unknown token) or 403 (auth off and not loopback)."""
        if not self.enabled:
            if not _is_loopback(client_host):
                raise ApiError(
                    403,
                    f"authentication is off (SEGPIPE_AUTH=off): only loopback clients are served, not {client_host}",
                )
            return Principal(role="admin", name="local")
        if not token:
            raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'", headers=_CHALLENGE)
        digest = token_digest(token)
        role = self._by_digest.get(digest)
        if role is None:
            raise ApiError(401, "unknown bearer token", headers=_CHALLENGE)
        return Principal(role=role, name=f"{role}:{digest[:10]}")

    def authenticate_session(self, session_id: str, sessions: PageSessionStore, client_host: str | None) -> Principal:
        """The caller behind a review-page session id, or `ApiError` 401 when it expired, was revoked, or its
        token is no longer configured. With authentication off, the same as `authenticate` without a token."""
        if not self.enabled:
            return self.authenticate(None, client_host)
        live = sessions.live(session_id)
        if live is None:
            raise ApiError(401, "the page session has expired or was logged out: log in again", headers=_CHALLENGE)
        role = self._by_digest.get(live.token_digest)
        if role is None:
            raise ApiError(401, "the token this page session logged in with is no longer configured",
                           headers=_CHALLENGE)
        return Principal(role=role, name=f"{role}:{live.token_digest[:10]}")


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def presented_token(request: Request) -> str | None:
    """The bearer token of the request's Authorization header (never the session cookie)."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, "the Authorization header must be 'Bearer <token>'", headers=_CHALLENGE)
        return value.strip()
    return None


def session_id(request: Request) -> str | None:
    """The review pages' session id from the cookie, on GET/HEAD only (see the module docstring)."""
    if request.method in SAFE_METHODS:
        return request.cookies.get(SESSION_COOKIE) or None
    return None


def caller(request: Request) -> Principal:
    """Who sent ``request``: its bearer token if it has one, else its page session; `ApiError` 401/403."""
    auth: Authenticator = request.app.state.auth
    host = request.client.host if request.client else None
    token = presented_token(request)
    if token is None:
        page_session = session_id(request)
        if page_session is not None:
            return auth.authenticate_session(page_session, request.app.state.ctx.stores.sessions, host)
    return auth.authenticate(token, host)


def require(role: str) -> Callable[..., Principal]:
    """A dependency that authenticates the request and demands at least ``role``."""
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")

    def dependency(
        request: Request, _credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)
    ) -> Principal:
        principal = caller(request)
        if not principal.has(role):
            raise ApiError(403, f"this needs the {role} role; your token has {principal.role}")
        return principal

    return dependency


annotator = require("annotator")
engineer = require("engineer")
admin = require("admin")
