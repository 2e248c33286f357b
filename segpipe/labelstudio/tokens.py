"""Label Studio API tokens of either kind, turned into the ``Authorization`` header its API accepts.

Label Studio has two kinds of token (Account & Settings → Personal Access Token / Legacy Token):

- a **personal access token** is a JWT *refresh* token. It is never sent as it is: it is exchanged at
  ``POST /api/token/refresh/`` for a short-lived *access* token, sent as ``Bearer <access>``, and
  exchanged again shortly before that one expires (its ``exp`` claim);
- a **legacy token** (40 hex characters) is sent as ``Token <token>``.

People paste either with or without a scheme (``Token …``, ``Bearer …``), so a leading scheme word is
dropped before the kind is decided by the token's shape (a JWT has three dot-separated parts).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from dataclasses import dataclass, field

import httpx

from segpipe.errors import ConfigError

REFRESH_PATH = "/api/token/refresh/"
RENEW_BEFORE_SECONDS = 30.0  # renew an access token this long before it expires
DEFAULT_ACCESS_SECONDS = 300.0  # assumed lifetime when an access token carries no readable exp
TIMEOUT = 20.0
_SCHEMES = ("token", "bearer")


def bare_token(token: str) -> str:
    """``"Token abc"``, ``"Bearer abc"``, ``" abc "`` → ``"abc"``; ConfigError for an empty token."""
    text = token.strip()
    scheme, _, rest = text.partition(" ")
    if scheme.lower() in _SCHEMES and rest.strip():
        text = rest.strip()
    if not text or text.lower() in _SCHEMES or any(c.isspace() for c in text):
        raise ConfigError("Label Studio token: expected one token (a personal access token or a legacy token), "
                          f"optionally after 'Token ' or 'Bearer '; got {len(token)} characters with spaces inside")
    return text


def is_personal_access_token(token: str) -> bool:
    """A personal access token is a JWT: three base64url parts separated by dots."""
    return bare_token(token).count(".") == 2


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim (seconds since the epoch) of a JWT, read without checking its signature
    (only Label Studio checks it; segpipe only needs to know when to renew), or None."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, (int, float)) else None


@dataclass
class LabelStudioAuth:
    """The ``Authorization`` header for one Label Studio server and token, renewed as needed.

    Thread-safe: the API answers requests on several threads and they share one instance per
    (server, token). ``clock`` is ``time.time`` (access-token expiry is wall-clock time).
    """

    url: str
    token: str
    access: str | None = None
    access_expires: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self.token = bare_token(self.token)

    @property
    def kind(self) -> str:
        return "personal access token" if is_personal_access_token(self.token) else "legacy token"

    def header(self, client: httpx.Client | None = None) -> dict[str, str]:
        """``{"Authorization": …}``: ``Token <legacy>`` or ``Bearer <access>`` (refreshed when due)."""
        if not is_personal_access_token(self.token):
            return {"Authorization": f"Token {self.token}"}
        with self._lock:
            if self.access is None or time.time() >= self.access_expires - RENEW_BEFORE_SECONDS:
                self._refresh(client)
            return {"Authorization": f"Bearer {self.access}"}

    def invalidate(self) -> None:
        """Forget the access token (after a 401), so the next `header` asks for a new one."""
        with self._lock:
            self.access = None

    def _refresh(self, client: httpx.Client | None) -> None:
        url = self.url + REFRESH_PATH
        try:
            if client is not None:
                response = client.post(url, json={"refresh": self.token}, timeout=TIMEOUT)
            else:
                response = httpx.post(url, json={"refresh": self.token}, timeout=TIMEOUT)
        except httpx.HTTPError as e:
            raise ConfigError(f"Label Studio at {self.url}: could not exchange the personal access token ({e})") from None
        if response.status_code != 200:
            raise ConfigError(
                f"Label Studio at {self.url} refused the personal access token: POST {REFRESH_PATH} answered "
                f"{response.status_code} {response.text[:200]} (is it revoked, or from another Label Studio?)")
        access = response.json().get("access") if response.headers.get("content-type", "").startswith(
            "application/json") else None
        if not isinstance(access, str) or not access:
            raise ConfigError(f"Label Studio at {self.url}: {REFRESH_PATH} answered no access token")
        self.access = access
        self.access_expires = jwt_expiry(access) or time.time() + DEFAULT_ACCESS_SECONDS


_shared: dict[tuple[str, str], LabelStudioAuth] = {}
_shared_lock = threading.Lock()


def shared_auth(url: str, token: str) -> LabelStudioAuth:
    """One `LabelStudioAuth` per (server, token) in this process, so access tokens are reused."""
    key = (url.rstrip("/"), bare_token(token))
    with _shared_lock:
        auth = _shared.get(key)
        if auth is None:
            auth = _shared[key] = LabelStudioAuth(url, token)
        return auth
