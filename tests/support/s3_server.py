"""A real S3-API server on loopback for the tests: moto's server mode, in its own process on a free port.

`S3Server.env` is what a process needs to talk to it through s3fs (the standard ``AWS_*`` variables,
as a deployment sets them for MinIO). Skips with the reason when moto's server is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from segpipe.processes import stop_process
from tests.support.ports import free_port
from tests.support.waiting import port_open, wait_until


@dataclass
class S3Server:
    endpoint: str
    proc: subprocess.Popen[bytes]

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    try:
        import moto.server  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as e:
        pytest.skip(f"moto[server] / s3fs not installed ({e}); `make install` installs the test extra")
    port = free_port()
    log = Path(tmp_path_factory.mktemp("s3")) / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    server = S3Server(f"http://127.0.0.1:{port}", proc)
    try:
        wait_until(lambda: port_open(port), what="moto server", timeout=60, process=proc, log=log)
    except RuntimeError as e:
        proc.kill()
        pytest.fail(str(e))
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
