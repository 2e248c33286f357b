"""Label Studio's authentication to its ML backend, checked against segpipe's tokens.

Label Studio sends HTTP Basic auth when the ML backend connection is set to "Basic Authentication"
(any user name, a segpipe token as the password), and its webhooks send whatever headers the webhook
names (``Authorization: Bearer <token>``). Either is checked like every other token; annotator is
enough, since these routes only read predictions and open a debounce window (the retraining tick
still decides by the dataset's content hash).
"""

from __future__ import annotations

import base64
import binascii

from fastapi import Request

from segpipe.api.auth import Authenticator, Principal
from segpipe.api.errors import ApiError

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="segpipe", Bearer'}


def ls_caller(request: Request) -> Principal:
    """FastAPI dependency: the caller of an /ls route (annotator role or above)."""
    auth: Authenticator = request.app.state.auth
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    token: str | None = None
    if scheme.lower() == "basic" and value:
        try:
            _user, _, token = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "malformed Basic authorization header", headers=_CHALLENGE) from None
    elif scheme.lower() in ("bearer", "token") and value:
        token = value.strip()
    elif header:
        raise ApiError(401, "the Authorization header must be Basic (password = a segpipe token) or Bearer",
                       headers=_CHALLENGE)
    try:
        return auth.authenticate(token or None, request.client.host if request.client else None)
    except ApiError as exc:
        if exc.status_code == 401:
            raise ApiError(401, f"{exc.message} (Label Studio: set the ML backend's Basic Authentication "
                                "password to a segpipe token)", headers=_CHALLENGE) from None
        raise
