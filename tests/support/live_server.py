"""The API app served by a real uvicorn process on a free loopback port, configured by ``SEGPIPE_*``
variables, for clients that must speak HTTP to it (a browser, a Label Studio server)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from segpipe.processes import stop_process
from tests.support.paths import REPO
from tests.support.ports import free_port
from tests.support.waiting import wait_until


@contextmanager
def live_api(env: dict[str, str], log: Path, timeout: float = 60.0, command: Sequence[str] | None = None) -> Iterator[str]:
    """Start uvicorn with ``env`` added to this process's environment; yield its base URL; stop it after.

    ``command`` (default: uvicorn on the app factory) is the server's command line without its port:
    ``--port N`` is appended."""
    with live_api_process(env, log, timeout, command) as (base, _proc):
        yield base


@contextmanager
def live_api_process(env: dict[str, str], log: Path, timeout: float = 60.0, command: Sequence[str] | None = None,
                     repo: Path = REPO, poll: float = 0.2) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`live_api`, yielding the server process too (its pid: /proc/<pid>/…); ``repo``: the checkout it runs
    from (its ``segpipe`` package is the one imported); ``poll``: seconds between /health tries."""
    port = free_port()
    full_env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", **env}
    base_cmd = list(command) if command is not None else [
        sys.executable, "-m", "uvicorn", "segpipe.api.app:create_app", "--factory", "--host", "127.0.0.1",
        "--log-level", "warning"]
    cmd = [*base_cmd, "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT, cwd=repo)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{base}/health"), what="uvicorn", timeout=timeout, process=proc, log=log,
                   interval=poll)
        yield base, proc
    finally:
        stop_process(proc, grace=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def spawn_segpipe(args: Sequence[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """``python -m segpipe ARGS`` (a worker, beat) configured by ``env`` alone: this process's ``SEGPIPE_*``
    variables are left out, one torch thread, unbuffered output into ``log``. Stop it with `stop_process`."""
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("SEGPIPE_")}, **env,
            "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "segpipe", *args], env=full, stdout=out,
                                stderr=subprocess.STDOUT, cwd=cwd)
