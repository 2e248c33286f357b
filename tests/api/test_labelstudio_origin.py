"""Label Studio image fetches go only to the configured server's origin (scheme, host and port), so the Label
Studio token never travels in clear to an ``http://`` URL when the server is configured as ``https://``.

A real HTTP server on loopback records every request it gets (and the Authorization header it carried)."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from segpipe.api.errors import ApiError
from segpipe.api.labelstudio.task_images import on_label_studio, read_task_image
from tests.api.conftest import make_settings

LS_TOKEN = "ls-secret-token"


def _png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(out, format="PNG")
    return out.getvalue()


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        body = _png()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def plain_server() -> Iterator[tuple[int, list[tuple[str, str | None]]]]:
    """An http:// server on loopback: its port and the (path, Authorization) of each request it got."""
    seen: list[tuple[str, str | None]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def test_an_http_url_for_an_https_server_gets_no_request_and_no_token(
    tmp_path: Path, plain_server: tuple[int, list[tuple[str, str | None]]]
) -> None:
    port, seen = plain_server
    settings = make_settings(tmp_path, label_studio_url=f"https://127.0.0.1:{port}", label_studio_token=LS_TOKEN)
    with pytest.raises(ApiError) as refused:
        read_task_image(f"http://127.0.0.1:{port}/data/upload/1/a.png", settings, task_id=5)
    assert refused.value.status_code == 403
    assert "task 5" in refused.value.message and "scheme, host and port must all match" in refused.value.message
    assert seen == [], "the token went out over plain http"


def test_the_configured_origin_is_fetched_with_the_token(
    tmp_path: Path, plain_server: tuple[int, list[tuple[str, str | None]]]
) -> None:
    port, seen = plain_server
    settings = make_settings(tmp_path, label_studio_url=f"HTTP://127.0.0.1:{port}/", label_studio_token=LS_TOKEN)
    image = read_task_image(f"http://127.0.0.1:{port}/data/upload/1/a.png", settings, task_id=6)
    assert image.content == _png() and image.suffix == ".png"
    assert seen == [("/data/upload/1/a.png", f"Token {LS_TOKEN}")]


@pytest.mark.parametrize(
    ("url", "base", "same"),
    [
        ("https://ls.example/data/upload/a.png", "https://ls.example", True),
        ("https://LS.example:443/data/a.png", "https://ls.example/", True),  # default port, case
        ("http://ls.example:80/a.png", "http://ls.example", True),
        ("http://ls.example/a.png", "https://ls.example", False),  # scheme differs: no token in clear
        ("https://ls.example:8443/a.png", "https://ls.example", False),  # port differs
        ("https://ls.example.evil.test/a.png", "https://ls.example", False),
        ("https://user@ls.example/a.png", "https://ls.example", True),  # userinfo is not part of the origin
        ("https://ls.example:notaport/a.png", "https://ls.example", False),
        ("https:///a.png", "https://ls.example", False),
        ("https://ls.example/a.png", None, False),
    ],
)
def test_origin_comparison(url: str, base: str | None, same: bool) -> None:
    assert on_label_studio(url, base) is same
