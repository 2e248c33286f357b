"""A real Label Studio server for tests: its own venv, its own SQLite data dir, loopback, a free port.

Reusable: ``from tests.support.labelstudio_server import label_studio_server`` in a test module (or conftest)
makes the session fixture (one server per test session) available; it yields a `LabelStudioServer` with
``url`` and ``token`` (a legacy API token, usable as ``Authorization: Token …`` and by label-studio-sdk's
``LabelStudio(api_key=)``).
The admin user and token are created non-interactively by ``label-studio start --username/--password/
--user-token``. Local-files serving is on, rooted at ``files_root`` (``/data/local-files/?d=…`` URLs).

The venv is ``SEGPIPE_LABEL_STUDIO_VENV`` (default ``<repo>/.venvs/label-studio``, made by ``make
labelstudio-venv``). The first start migrates a fresh SQLite database, which takes minutes on a busy
2-core machine: ``SEGPIPE_LABEL_STUDIO_START_TIMEOUT`` (seconds, default 900) bounds the wait.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.waiting import log_tail, wait_until
from tests.tools.venvs import tool_python


@dataclass
class LabelStudioServer:
    url: str
    token: str
    username: str
    password: str
    data_dir: Path
    files_root: Path
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, chars: int = 3000) -> str:
        return log_tail(self.log, chars)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


# The two switches docker-compose's `labelstudio` profile sets (docs/label-studio.md): Label Studio refuses
# ML backends and webhooks on loopback and private addresses by default, which is where segpipe runs.
PRIVATE_ADDRESSES = {"ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false"}


def start_label_studio(base: Path, timeout: float | None = None, env: dict[str, str] | None = None) -> LabelStudioServer:
    """Start ``label-studio start`` on 127.0.0.1 with a fresh data dir under ``base``; wait for /health.

    ``env`` adds variables to Label Studio's environment (e.g. `PRIVATE_ADDRESSES`)."""
    python = tool_python("label-studio")
    executable = python.parent / "label-studio"
    port = free_port()
    data_dir, files_root = base / "data", base / "files"
    data_dir.mkdir(parents=True, exist_ok=True)
    files_root.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(20)
    username, password = "segpipe-tests@example.com", secrets.token_urlsafe(12)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "DJANGO_DB": "sqlite",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(files_root),
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        **(env or {}),
    }
    log = base / "label-studio.log"
    command = [str(executable), "start", "--no-browser", "--data-dir", str(data_dir), "--internal-host", "127.0.0.1",
               "--port", str(port), "--username", username, f"--password={password}", "--user-token", token,
               "--enable-legacy-api-token", "--skip-long-migrations", "--log-level", "WARNING"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=base,
                                   start_new_session=True)
    server = LabelStudioServer(f"http://127.0.0.1:{port}", token, username, password, data_dir, files_root, process, log)
    limit = timeout or float(os.environ.get("SEGPIPE_LABEL_STUDIO_START_TIMEOUT", "900"))
    try:
        wait_until(lambda: _answers(server), what="label-studio", timeout=limit, process=process, log=log, interval=2)
    except RuntimeError:
        server.stop()
        raise
    return server


def _answers(server: LabelStudioServer) -> bool:
    """Whether Label Studio serves its API with the admin's token (not only its health page: the
    migrations that create the token run after the web server is up)."""
    request = urllib.request.Request(server.url + "/api/projects/", headers={"Authorization": f"Token {server.token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def label_studio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """The test session's one Label Studio: at its default settings apart from the two private-address
    switches of docker-compose's `labelstudio` profile (`PRIVATE_ADDRESSES`), so segpipe on loopback can
    be its ML backend and webhook target. Starting it takes minutes on a busy machine: every module shares it."""
    server = start_label_studio(tmp_path_factory.mktemp("label-studio"), env=PRIVATE_ADDRESSES)
    try:
        yield server
    finally:
        server.stop()
