"""Stopping child processes (workers, servers) that segpipe, its tests and benchmarks start."""

from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen, grace: float = 20.0) -> int | None:
    """SIGTERM (Celery's warm shutdown, uvicorn's graceful exit), then SIGKILL if `proc` has not exited
    after `grace` seconds. Returns the exit code; a process that already ended is left as it is."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    return proc.returncode
