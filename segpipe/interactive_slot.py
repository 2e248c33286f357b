"""The reserved interactive slot: a worker that also serves ``interactive`` runs it in its own process.

A worker runs one job at a time (solo pool), so a worker busy with a training job would leave Label
Studio's short predict jobs waiting until the training ends. When a worker is told to consume
``interactive`` beside other queues, it starts one child ``segpipe worker --queues interactive``
and consumes only the other queues itself: an interactive job then waits at most for the previous
interactive job, never for a training job. The child is restarted if it dies (with a back-off after
quick failures) and stopped with its parent.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

from segpipe.processes import stop_process

log = logging.getLogger("segpipe.worker")
INTERACTIVE = "interactive"
QUICK_EXIT = 30.0
MAX_BACKOFF = 60.0


def split_queues(queues: list[str], reserve: bool) -> tuple[list[str], bool]:
    """(queues this process consumes, whether to start the interactive child)."""
    if reserve and INTERACTIVE in queues and len(queues) > 1:
        return [q for q in queues if q != INTERACTIVE], True
    return queues, False


def slot_command(node: str, loglevel: str) -> list[str]:
    return [sys.executable, "-m", "segpipe", "worker", "--queues", INTERACTIVE, "--no-interactive-slot",
            "--loglevel", loglevel, "--reconcile-every", "0", "--name", f"interactive-{node}"]


class InteractiveSlot:
    """Keeps one interactive worker child alive until `stop`."""

    def __init__(self, command: list[str], threads: int = 1) -> None:
        self.command = command
        # the child shares the machine with a training job: one thread answers a small image quickly
        self.env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        # the parent serves this worker's /metrics port: a second process there could not bind it
        self.env.pop("SEGPIPE_WORKER_METRICS_PORT", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="interactive-slot")

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            started = time.monotonic()
            self.proc = subprocess.Popen(self.command, env=self.env)
            log.info("interactive slot: worker started (pid %d)", self.proc.pid)
            while self.proc.poll() is None and not self._stop.wait(0.5):
                pass
            if self._stop.is_set():
                return
            quick = time.monotonic() - started < QUICK_EXIT
            failures = failures + 1 if quick else 0
            delay = min(MAX_BACKOFF, 2.0**failures) if quick else 1.0
            log.warning("interactive slot: worker exited with %s; restarting in %.0f s", self.proc.returncode, delay)
            self._stop.wait(delay)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.proc is not None:
            stop_process(self.proc, grace=30)
