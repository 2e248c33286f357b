"""Review pages for annotators and engineers, served by the API app under ``/ui`` (see `views`).

Log in at ``/ui/login`` with an API token (`session`); every page needs at least the annotator role,
and pages only read. Static files (the drawing scripts and the style sheet) are public: they hold
no data.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from segpipe.api.pages import session, views
from segpipe.api.pages.session import LoginRequired, login_redirect

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Add the pages, their static files and the redirect to the login form to ``app``."""
    app.include_router(session.router)
    app.include_router(views.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")

    @app.exception_handler(LoginRequired)
    async def _to_login(_request: Request, exc: LoginRequired) -> Response:
        return login_redirect(exc)
