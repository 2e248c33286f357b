"""A real MLflow tracking server on loopback (SQLite backend, artifacts served by the server).

MLflow lives in its own virtual environment (its dependency pins are not ours): ``make mlflow-venv``
creates ``.venvs/mlflow`` from its lock; ``SEGPIPE_TEST_MLFLOW_BIN`` may name another ``mlflow`` executable. The
tests skip, saying so, only when no such executable exists.
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from segpipe.processes import stop_process
from tests.support.ports import free_port
from tests.support.waiting import wait_until
from tests.tools.venvs import venv

STARTUP_S = 240.0  # a first start creates the SQLite schema (~40 migrations): slow on a busy CPU


def mlflow_bin() -> Path | None:
    explicit = os.environ.get("SEGPIPE_TEST_MLFLOW_BIN")
    path = Path(explicit) if explicit else venv("mlflow") / "bin" / "mlflow"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = mlflow_bin()
    if exe is None:
        pytest.skip("no MLflow server executable: run `make mlflow-venv` (or set SEGPIPE_TEST_MLFLOW_BIN)")
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(exe), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, cwd=root,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until(lambda: _healthy(url), what="mlflow server", timeout=STARTUP_S, process=proc,
                       log=root / "server.log", interval=0.5)
        except RuntimeError as e:
            pytest.fail(str(e))
        yield url
    finally:
        stop_process(proc)
        log.close()
