"""The API as it is served (issue 22, point 5): header and keep-alive timeouts against slow clients on a real
server, and a database that is down at start named in one line (password hidden) by the API and the worker."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.live_server import live_api
from tests.support.paths import REPO
from tests.support.ports import free_port

pytestmark = pytest.mark.integration
HEADER_TIMEOUT = "1"
KEEP_ALIVE = "1"
# Generous: a server that never closes fails the test at this bound; one that works closes within ~1 s.
GIVE_UP_S = 30.0


def _env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "data").mkdir(exist_ok=True)
    return {
        "SEGPIPE_HOME": str(tmp_path / "home"),
        "SEGPIPE_DATABASE_URL": f"sqlite:///{tmp_path / 'segpipe.db'}",
        "SEGPIPE_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        "SEGPIPE_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "SEGPIPE_DATA_ROOTS": str(tmp_path / "data"),
        "SEGPIPE_TOKENS": "eng-token:engineer",
        "SEGPIPE_HTTP_HEADER_TIMEOUT": HEADER_TIMEOUT,
        "SEGPIPE_HTTP_KEEP_ALIVE_TIMEOUT": KEEP_ALIVE,
    }


SEGPIPE_API = [sys.executable, "-m", "segpipe", "api", "--host", "127.0.0.1"]


def _uvicorn_with(protocol: str) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "segpipe.api.app:create_app", "--factory", "--host", "127.0.0.1",
            "--log-level", "warning", "--http", f"segpipe.api.server:{protocol}", "--timeout-keep-alive", KEEP_ALIVE]


@pytest.fixture(scope="module", params=["segpipe api", "H11HeaderTimeout", "HttpToolsHeaderTimeout"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real server: ``segpipe api`` as shipped, or uvicorn run by hand with each of the two protocol classes."""
    command = SEGPIPE_API if request.param == "segpipe api" else _uvicorn_with(request.param)
    root = tmp_path_factory.mktemp("server")
    with live_api(_env(root), root / "server.log", command=command) as base:
        host, port = base.removeprefix("http://").split(":")
        yield host, int(port)


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection; fails if it keeps it open past GIVE_UP_S."""
    sock.settimeout(GIVE_UP_S)
    received = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            pytest.fail(f"the server kept a stalled connection open for {GIVE_UP_S:.0f} s (got {received!r})")
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def test_a_slow_loris_client_is_cut_off(server: tuple[str, int]) -> None:
    """Headers trickled one line at a time, never finished: the server answers 408 and closes."""
    with socket.create_connection(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        deadline = time.monotonic() + GIVE_UP_S
        closed = False
        while time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                sock.sendall(b"X-Slow: 1\r\n")  # each line well within any per-read timeout
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sock.setblocking(False)
            try:
                peek = sock.recv(4096, socket.MSG_PEEK)
            except BlockingIOError:
                peek = None
            finally:
                sock.setblocking(True)
            if peek is not None:
                closed = True
                break
        assert closed, f"the server still read headers after {GIVE_UP_S:.0f} s"
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer


def test_a_connection_that_sends_nothing_is_closed(server: tuple[str, int]) -> None:
    with socket.create_connection(server) as sock:
        answer = _read_until_closed(sock)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer


def test_an_idle_keep_alive_connection_is_closed_and_a_prompt_one_is_served(server: tuple[str, int]) -> None:
    connection = http.client.HTTPConnection(*server, timeout=GIVE_UP_S)
    try:
        for _ in range(2):  # two requests on one connection: the timeouts do not cut prompt clients
            connection.request("GET", "/health")
            answer = connection.getresponse()
            assert answer.status == 200 and answer.read()
        assert connection.sock is not None, "the server did not keep the connection alive"
        rest = _read_until_closed(connection.sock)  # then idle: the keep-alive timeout closes it
    finally:
        connection.close()
    assert rest == b"", rest


def _start_against_a_down_database(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    dead_port = free_port()  # bound and released: nothing listens there
    env = {**os.environ, **_env(tmp_path), "PYTHONPATH": str(REPO),
           "SEGPIPE_DATABASE_URL": f"postgresql://segpipe:hunter2-secret@127.0.0.1:{dead_port}/segpipe"}
    done = subprocess.run([sys.executable, "-m", "segpipe", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=REPO, check=False)
    done.dead_port = dead_port  # type: ignore[attr-defined]
    return done


@pytest.mark.parametrize("args", [["api", "--port", "0"], ["worker", "--queues", "cpu"],
                                  ["worker", "--queues", "cpu", "--gpus", "0"]], ids=["api", "worker", "worker-gpus"])
def test_a_database_that_is_down_is_named_in_one_line(args: list[str], tmp_path: Path) -> None:
    done = _start_against_a_down_database(args, tmp_path)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode != 0
    lines = output.splitlines()
    assert len(lines) == 1, f"{len(lines)} lines:\n{output[-3000:]}"
    line = lines[0]
    assert "Traceback" not in output and "hunter2-secret" not in output
    assert f"segpipe:***@127.0.0.1:{done.dead_port}/segpipe" in line  # type: ignore[attr-defined]
    assert "cannot reach the database" in line and "Connection refused" in line
