"""Logging in to the review pages: a form that takes an API token once and opens a server-side session.

The session (`segpipe.stores.page_sessions`) lives in the SQL store; the cookie carries only its random
id, never the token, and that id does not work as a bearer token. It expires after
``SEGPIPE_PAGE_SESSION_HOURS``, and logout revokes it in the store, so a copied cookie stops working too.
The cookie is HttpOnly (page scripts cannot read it, so an injected script cannot steal it),
SameSite=Strict (no other site's page sends it) and Secure when served over HTTPS. The API accepts
it on GET/HEAD only (`segpipe.api.auth.session_id`), so it authorizes reading, never changes: an
annotator's pages can look, never submit. The login and logout forms are checked against cross-site
posting by their Origin header. The token travels in the POST body only, never in a URL (URLs end up
in logs and browser history).
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from segpipe.api.auth import (
    SESSION_COOKIE,
    Authenticator,
    Principal,
    caller,
    session_id,
    token_digest,
)
from segpipe.api.deps import context
from segpipe.api.errors import ApiError

MAX_TOKEN_CHARS = 512
router = APIRouter(prefix="/ui", include_in_schema=False)


class LoginRequired(Exception):
    """Raised by `page_user`: the page answers with a redirect to the login form (see `install`)."""

    def __init__(self, next_path: str, message: str = "") -> None:
        super().__init__(message)
        self.next_path = next_path
        self.message = message


def page_user(request: Request) -> Principal:
    """The person viewing a page, from the session cookie; `LoginRequired` when there is none or it is stale."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        return caller(request)
    except ApiError as exc:
        if exc.status_code == 401:
            raise LoginRequired(target, "" if session_id(request) is None else "your session has ended") from exc
        raise


def login_redirect(exc: LoginRequired) -> RedirectResponse:
    return RedirectResponse(f"/ui/login?next={quote(exc.next_path, safe='')}", status_code=303)


def safe_next(next_path: str | None) -> str:
    """Only a path on this site under /ui (no scheme, no host, no ``//``): never an open redirect."""
    if not next_path:
        return "/ui/jobs"
    parts = urlsplit(next_path)
    if parts.scheme or parts.netloc or not next_path.startswith("/ui") or next_path.startswith("//"):
        return "/ui/jobs"
    return next_path


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        # Browsers send Origin on every cross-site POST; a missing one is a same-site or non-browser client.
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> Response:
    from segpipe.api.pages.views import render

    return render(request, "login.html", None, next=safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, token: str = Form(..., max_length=MAX_TOKEN_CHARS), next: str = Form("/ui/jobs")) -> Response:
    """Check the token; on success set the session cookie and go to ``next``."""
    from segpipe.api.pages.views import render

    if not _same_origin(request):
        raise ApiError(403, "login form posted from another site (Origin header does not match)")
    auth: Authenticator = request.app.state.auth
    try:
        who = auth.authenticate(token.strip(), request.client.host if request.client else None)
    except ApiError as exc:
        return render(request, "login.html", None, next=safe_next(next), error=exc.message, status_code=exc.status_code)
    ctx = context(request)
    lifetime = ctx.settings.page_session_hours * 3600
    new_session = ctx.stores.sessions.create(token_digest(token.strip()), who.name, lifetime)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        new_session,
        max_age=int(lifetime),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.headers["X-Segpipe-Role"] = who.role
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """Revoke the session in the store (a copy of the cookie stops working too) and drop the cookie."""
    if not _same_origin(request):
        raise ApiError(403, "logout posted from another site (Origin header does not match)")
    current = request.cookies.get(SESSION_COOKIE)
    if current:
        context(request).stores.sessions.revoke(current)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
