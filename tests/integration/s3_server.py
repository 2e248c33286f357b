"""A real S3-API server on loopback for the tests: moto's server mode, in its own process on a free port.

`S3Server.env` is what a process needs to talk to it through s3fs (the standard ``AWS_*`` variables,
as a deployment sets them for MinIO). Skips with the reason when moto's server is not installed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from segpipe.processes import stop_process


@dataclass
class S3Server:
    endpoint: str
    proc: subprocess.Popen[bytes]

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    try:
        import moto.server  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as e:
        pytest.skip(f"moto[server] / s3fs not installed ({e}); `make install` installs the test extra")
    port = _free_port()
    log = Path(tmp_path_factory.mktemp("s3")) / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    server = S3Server(f"http://127.0.0.1:{port}", proc)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto server did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)  # this process (the API, the test's own reads) talks to it too
    try:
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop_process(proc, grace=15)
