"""Thin, idempotent Celery tasks: a job id in, `segpipe.jobs.execute` does the work, the store keeps the state."""

from __future__ import annotations

import logging
import os
import socket

from segpipe.settings import get_settings
from workers.celery_app import RECONCILE, RETRAIN_TICK, RUN_JOB, app

log = logging.getLogger("segpipe.worker")
_stores = None


def stores():  # noqa: ANN201 - one Stores per worker process, opened lazily (after any fork)
    global _stores
    if _stores is None:
        from segpipe.stores import Stores

        _stores = Stores.from_settings()
    return _stores


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@app.task(name=RUN_JOB, acks_late=True, ignore_result=True)
def run_job(job_id: str) -> str:
    from segpipe.jobs.execute import run_job as run
    from segpipe.service import publish

    return run(job_id, stores=stores(), settings=get_settings(), owner=owner_name(),
               publish=lambda jid, queue: publish(app, jid, queue))


@app.task(name=RECONCILE, ignore_result=True)
def reconcile() -> int:
    from segpipe.service import reconcile as do_reconcile

    return do_reconcile(stores(), app, lost_after_seconds=get_settings().lost_message_seconds)


@app.task(name=RETRAIN_TICK, ignore_result=True)
def retrain_tick() -> list[dict[str, str | None]]:
    """Beat's retraining tick: check each scheduled model's dataset, queue retraining where it changed."""
    from dataclasses import asdict

    from segpipe.retrain.tick import run_tick

    return [asdict(r) for r in run_tick(stores(), app, get_settings())]
