"""A real Label Studio server (the ``label-studio`` package in its own virtual environment, SQLite) on a
free loopback port, for tests. The venv is ``SEGPIPE_TEST_LABEL_STUDIO_VENV`` (default
/work/venvs/label-studio; CI builds it with the export issue's Makefile target)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.live_server import free_port

LS_VENV = Path(os.environ.get("SEGPIPE_TEST_LABEL_STUDIO_VENV", "/work/venvs/label-studio"))
LS_TOKEN = "segpipe-test-ls-token-0123456789abcdef"
START_TIMEOUT = 420.0  # the first start migrates its database: minutes on two shared cores


@dataclass(frozen=True)
class LabelStudio:
    url: str
    token: str
    log: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}


def label_studio_binary() -> Path | None:
    binary = LS_VENV / "bin" / "label-studio"
    return binary if binary.is_file() else None


@contextmanager
def label_studio_server(root: Path, files_root: Path) -> Iterator[LabelStudio]:
    """Start Label Studio with its data in ``root``, serving local files under ``files_root``; stop it after."""
    binary = label_studio_binary()
    if binary is None:
        raise RuntimeError(f"no Label Studio venv at {LS_VENV}")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGPIPE_", "DJANGO", "PYTHON"))}
    env.update(
        LABEL_STUDIO_USERNAME="segpipe@example.com",
        LABEL_STUDIO_PASSWORD="segpipe-test-password",
        LABEL_STUDIO_USER_TOKEN=LS_TOKEN,
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
        LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(files_root),
        LOCAL_FILES_SERVING_ENABLED="true",
        LOCAL_FILES_DOCUMENT_ROOT=str(files_root),
        ML_BLOCK_LOCAL_IP="false",  # segpipe's backend and webhook run on loopback
        SSRF_PROTECTION_ENABLED="false",
        DJANGO_DB="sqlite",
        LABEL_STUDIO_BASE_DATA_DIR=str(root),
        COLLECT_ANALYTICS="false",
        LATEST_VERSION_CHECK="false",
    )
    log = root / "label-studio.log"
    cmd = [str(binary), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(root / "data"), "--enable-legacy-api-token"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"Label Studio exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/api/projects", headers={"Authorization": f"Token {LS_TOKEN}"}, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Label Studio did not answer within {START_TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(1.0)
        yield LabelStudio(url, LS_TOKEN, log)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
