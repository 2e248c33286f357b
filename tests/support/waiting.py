"""Waiting for a server a test started: poll until it answers, give up at a deadline, and stop at once
when its process has exited (a crash should say so, not wait out the timeout)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def log_tail(log: Path | None, chars: int = 3000) -> str:
    """The end of a server's log file, for an error message."""
    if log is None or not log.is_file():
        return "(no log)"
    return log.read_text(errors="replace")[-chars:]


def wait_until(ready: Callable[[], bool], *, what: str, timeout: float, process: subprocess.Popen[bytes] | None = None,
               log: Path | None = None, interval: float = 0.2) -> None:
    """Call ``ready`` every ``interval`` seconds until it returns True. `RuntimeError` (with the log's tail)
    when ``process`` has exited or ``timeout`` seconds have passed. ``ready`` catches its own
    connection errors and returns False."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log_tail(log)}")
        if ready():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer within {timeout:.0f} s:\n{log_tail(log)}")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True
