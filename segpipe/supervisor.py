"""``segpipe worker --gpus 0,1,2,3``: one worker process per GPU, each seeing only its own GPU.

CUDA does not survive fork and a worker runs one job at a time, so a host with N GPUs runs N worker
processes, each started fresh (not forked from a CUDA-initialised parent) with
``CUDA_VISIBLE_DEVICES=<its id>`` — inside it the GPU is ``cuda:0``. The supervisor restarts a child
that exits on its own (a crash, an out-of-memory kill), waiting longer after each quick failure, and on
SIGTERM / SIGINT passes the signal on (Celery's warm shutdown: the running job finishes or, if it
does not within the grace period, is killed and later resumed elsewhere from its checkpoint).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from segpipe.errors import ConfigError

log = logging.getLogger("segpipe.supervisor")
QUICK_EXIT = 30.0  # a child that dies sooner than this after its start counts as a quick failure
MAX_BACKOFF = 60.0
METRICS_PORT_ENV = "SEGPIPE_WORKER_METRICS_PORT"  # each child serves /metrics on this port + its index


def parse_gpus(text: str) -> list[str]:
    """``"0,1,2"`` → ``["0", "1", "2"]``; ids are CUDA ordinals or GPU UUIDs, each once."""
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise ConfigError("--gpus: give a comma-separated list of GPU ids, e.g. 0,1,2,3")
    bad = [i for i in ids if not (i.isdigit() or i.startswith(("GPU-", "MIG-")))]
    if bad:
        raise ConfigError(f"--gpus: {', '.join(bad)} is not a GPU id (a number like 0, or a GPU-/MIG- UUID)")
    if len(set(ids)) != len(ids):
        raise ConfigError(f"--gpus: ids repeat in {text!r}; each GPU gets one worker")
    return ids


@dataclass
class Child:
    gpu: str
    command: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command, env=self.env)
        self.started = time.monotonic()
        log.info("GPU %s: worker started (pid %d)", self.gpu, self.proc.pid)


@dataclass
class Supervisor:
    """Runs ``command_for(gpu)`` once per GPU with ``CUDA_VISIBLE_DEVICES=gpu`` until stopped."""

    gpus: Sequence[str]
    command_for: Callable[[str], list[str]]
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    grace: float = 60.0
    children: list[Child] = field(default_factory=list)
    stopping: bool = False

    def start(self) -> None:
        metrics_port = self.base_env.get(METRICS_PORT_ENV, "").strip()
        for index, gpu in enumerate(self.gpus):
            env = {**self.base_env, "CUDA_VISIBLE_DEVICES": gpu, "SEGPIPE_WORKER_GPU": gpu}
            if metrics_port.isdigit():  # one Prometheus target per worker process: port, port + 1, …
                env[METRICS_PORT_ENV] = str(int(metrics_port) + index)
            child = Child(gpu, self.command_for(gpu), env)
            child.start()
            self.children.append(child)

    def poll(self) -> None:
        """Restart children that exited, with a back-off after quick failures."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is None or child.proc.poll() is None:
                continue
            if child.restart_at == 0.0:
                quick = now - child.started < QUICK_EXIT
                child.failures = child.failures + 1 if quick else 0
                delay = min(MAX_BACKOFF, 2.0 ** child.failures) if quick else 1.0
                child.restart_at = now + delay
                log.warning("GPU %s: worker exited with %s; restarting in %.0f s", child.gpu, child.proc.returncode, delay)
            elif now >= child.restart_at:
                child.restart_at = 0.0
                child.start()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.stopping = True
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(sig)
        deadline = time.monotonic() + self.grace
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("GPU %s: worker did not stop within %.0f s; killing it", child.gpu, self.grace)
                child.proc.kill()
                child.proc.wait()

    def run(self) -> None:
        """Start, supervise until SIGTERM/SIGINT, then stop every child."""
        received: list[int] = []

        def on_signal(signum: int, _frame: object) -> None:
            received.append(signum)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not received:
                self.poll()
                time.sleep(0.5)
        finally:
            self.stop(received[0] if received else signal.SIGTERM)
            for s, handler in previous.items():
                signal.signal(s, handler)


def worker_command(queues: str, loglevel: str, reconcile_every: float, name: str | None) -> Callable[[str], list[str]]:
    """The ``segpipe worker`` command line of the child for one GPU (node name ``…-gpu<id>``)."""
    import socket

    def command(gpu: str) -> list[str]:
        node = f"{name or 'segpipe'}-gpu{gpu}@{socket.gethostname()}"
        return [sys.executable, "-m", "segpipe", "worker", "--queues", queues, "--loglevel", loglevel,
                "--reconcile-every", str(reconcile_every), "--name", node]

    return command
