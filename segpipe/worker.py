"""``segpipe worker``: a Celery worker that runs one job at a time in its own process.

The solo pool keeps the job in the worker process (CUDA does not survive fork; one GPU per worker via
``CUDA_VISIBLE_DEVICES``). A background thread runs the reconciler every ``reconcile_every`` seconds,
so jobs orphaned by a dead worker are re-queued, and queued jobs whose broker message was lost are
re-published, even when no beat process runs (the embedded setup).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from segpipe.settings import Settings

log = logging.getLogger("segpipe.worker")


def _reconcile_loop(every: float, stop: threading.Event) -> None:
    from segpipe.service import reconcile
    from segpipe.settings import get_settings
    from workers.celery_app import app
    from workers.tasks import stores

    while not stop.wait(every):
        try:
            reconcile(stores(), app, lost_after_seconds=get_settings().lost_message_seconds)
        except Exception:  # keep reconciling; the next round may succeed
            log.exception("reconcile failed")


def _serve_metrics(settings: Settings) -> None:
    """This worker's ``/metrics`` (docs/metrics.md), behind SEGPIPE_METRICS_TOKEN unless auth is off."""
    from segpipe.errors import ConfigError
    from segpipe.metrics.collectors import BuildInfo, ProcessMemory
    from segpipe.metrics.worker_server import start_metrics_server

    token = settings.metrics_token
    if token is None and settings.auth != "off":
        raise ConfigError("SEGPIPE_WORKER_METRICS_PORT is set but SEGPIPE_METRICS_TOKEN is not: set the token "
                          "Prometheus scrapes with (or SEGPIPE_AUTH=off for a local demo)")
    assert settings.worker_metrics_port is not None
    start_metrics_server(settings.worker_metrics_host, settings.worker_metrics_port, token,
                         [BuildInfo("worker"), ProcessMemory()])


def _log_devices() -> None:
    """Which GPUs this worker runs on (``segpipe worker --gpus`` gives each child one)."""
    import torch

    # device_count() does not create a CUDA context here (the ranks of a distributed job need the memory)
    log.info("CUDA_VISIBLE_DEVICES=%s, torch sees %d GPU(s)", os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)"),
             torch.cuda.device_count())


def run_worker(queues: list[str], loglevel: str = "info", reconcile_every: float = 30.0, name: str | None = None,
               interactive_slot: bool = True) -> None:
    """Consume ``queues`` one job at a time. With ``interactive_slot`` and ``interactive`` among other
    queues, the interactive queue gets its own child process (`segpipe.interactive_slot`)."""
    from segpipe.interactive_slot import InteractiveSlot, slot_command, split_queues
    from workers.celery_app import QUEUES, app

    unknown = [q for q in queues if q not in QUEUES]
    if unknown or not queues:
        from segpipe.errors import ConfigError

        raise ConfigError(f"unknown queue(s) {', '.join(unknown) or '(none)'}; known: {', '.join(QUEUES)}")
    from segpipe.logs import configure_logging
    from segpipe.settings import get_settings
    from workers.tasks import stores

    settings = get_settings()
    stores()  # the database first: one line naming it (password hidden) if it does not answer
    configure_logging(loglevel, settings.log_format)
    if settings.worker_metrics_port is not None:
        _serve_metrics(settings)
    from segpipe.engine.threads import configure_threads

    # a job's train.threads may change it for that job; this is the worker's default for the rest
    log.info("torch uses %d CPU threads", configure_threads())
    _log_devices()
    stop = threading.Event()
    if reconcile_every > 0:
        threading.Thread(target=_reconcile_loop, args=(reconcile_every, stop), daemon=True, name="reconcile").start()
    node = name or f"segpipe-{os.getpid()}@{socket.gethostname()}"
    own, reserve = split_queues(queues, interactive_slot)
    slot = InteractiveSlot(slot_command(node, loglevel)) if reserve else None
    if slot is not None:
        slot.start()
        log.info("queues %s here; 'interactive' in a reserved process", ",".join(own))
    try:
        app.worker_main(["worker", "--pool=solo", "--concurrency=1", f"--queues={','.join(own)}",
                         f"--loglevel={loglevel}", f"--hostname={node}", "--without-gossip", "--without-mingle"])
    finally:
        stop.set()
        if slot is not None:
            slot.stop()
