"""A small client for the parts of Label Studio's REST API that segpipe uses, with either token kind.

Every call sends the `LabelStudioAuth` header (a personal access token's access token is renewed
before it expires, and once more after a 401) and raises `LabelStudioError` naming the method, the
path and Label Studio's answer when it is not 2xx.
"""

from __future__ import annotations

from typing import Any, Self

import httpx

from segpipe.errors import SegpipeError
from segpipe.labelstudio.tokens import LabelStudioAuth

TIMEOUT = 120.0  # Label Studio validates a new ML backend by calling it: that can take a while


class LabelStudioError(SegpipeError):
    """Label Studio answered an error (or could not be reached); the message names the call."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class LabelStudioClient:
    def __init__(self, url: str, token: str, timeout: float = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.auth = LabelStudioAuth(self.url, token)
        self.http = httpx.Client(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """``method path`` on Label Studio; its JSON answer (None when empty)."""
        url = self.url + path
        try:
            response = self.http.request(method, url, headers=self.auth.header(self.http), **kwargs)
            if response.status_code == 401 and self.auth.access is not None:
                self.auth.invalidate()  # the access token may have been revoked or expired early
                response = self.http.request(method, url, headers=self.auth.header(self.http), **kwargs)
        except httpx.HTTPError as e:
            raise LabelStudioError(f"Label Studio at {self.url}: {method} {path} failed ({e})") from None
        if response.status_code >= 300:
            hint = ""
            if response.status_code == 401:
                hint = f" (the {self.auth.kind} was refused: is it from this Label Studio, and not revoked?)"
            raise LabelStudioError(f"Label Studio at {self.url}: {method} {path} answered {response.status_code}"
                                   f"{hint}: {response.text[:500]}", response.status_code)
        if not response.content:
            return None
        return response.json()

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def listing(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """A list endpoint's items, whether Label Studio pages it (``{"results": [...]}``) or not."""
        answer = self.get(path, params={**params, "page_size": 1000})
        if isinstance(answer, dict):
            return list(answer.get("results") or [])
        return list(answer or [])
