"""Submitting, cancelling and re-queuing jobs: the store row first, then the queue message.

Used by the HTTP API, the CLI and the beat schedule. A job id is its Celery task id. A spec that
arrives here is untrusted: it is size-limited, validated and every path confined to the data roots.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from segpipe.config import parse_yaml
from segpipe.errors import ConfigError, SegpipeError
from segpipe.jobspec import JOB_SPEC_KINDS, confine_spec, dump_spec, parse_spec
from segpipe.settings import Settings
from segpipe.stores import Job, Stores

log = logging.getLogger("segpipe.service")

RUN_JOB = "segpipe.run_job"
QUEUE_FOR_KIND = {"train": "gpu", "evaluate": "gpu", "predict": "gpu"}


def submit(
    stores: Stores,
    celery_app: Celery,
    settings: Settings,
    kind: str,
    spec: dict[str, Any] | str,
    *,
    submitted_by: str | None = None,
    queue: str | None = None,
    model_name: str | None = None,
) -> Job:
    """Validate `spec` (a mapping or YAML text), store a queued job and publish its message."""
    if kind not in JOB_SPEC_KINDS:
        raise ConfigError(f"unknown job kind {kind!r}; known: {', '.join(JOB_SPEC_KINDS)}")
    if isinstance(spec, str):
        if len(spec.encode()) > settings.max_config_kb * 1024:
            raise ConfigError(f"job config is larger than {settings.max_config_kb:g} KB")
        spec = parse_yaml(spec, source=f"{kind} job")
    parsed = confine_spec(parse_spec(kind, spec, source=f"{kind} job"), settings.roots, settings.artifacts)
    if queue is not None and queue not in ("gpu", "cpu", "interactive"):
        raise ConfigError(f"unknown queue {queue!r}; known: gpu, cpu, interactive")
    queue = queue or QUEUE_FOR_KIND[kind]
    name = model_name or (getattr(parsed, "name", None) if kind == "train" else None)
    job = stores.jobs.create(kind, dump_spec(parsed), queue, submitted_by=submitted_by, model_name=name)
    try:
        publish(celery_app, job.id, queue)
    except Exception as e:  # the row must not wait for a message that was never sent
        stores.jobs.mark_failed(job.id, f"could not queue the job: broker unreachable ({type(e).__name__}: {e})")
        raise BrokerUnavailable(f"job {job.id}: the broker did not accept it ({type(e).__name__}: {e})") from None
    return job


class BrokerUnavailable(SegpipeError):
    """The job row was written but its message could not be published (the job is marked failed)."""


def publish(celery_app: Celery, job_id: str, queue: str) -> None:
    celery_app.send_task(RUN_JOB, args=[job_id], task_id=job_id, queue=queue)


def cancel(stores: Stores, celery_app: Celery, job_id: str) -> str:
    """Queued jobs are cancelled at once (and their message revoked); running ones stop at their next
    step with their checkpoint kept. Returns the job's state after the request."""
    state = stores.jobs.request_cancel(job_id)
    if state == "cancelled":
        try:
            celery_app.control.revoke(job_id)
        except Exception:  # noqa: BLE001 - the store already says cancelled: a delivered message is dropped by claim()
            log.info("job %s: revoke not delivered; the worker will skip it", job_id)
    return state


def reconcile(stores: Stores, celery_app: Celery) -> int:
    """Re-queue running jobs whose lease expired (their worker died) so none is orphaned, even when
    its message was already acknowledged. Returns how many were re-published."""
    count = 0
    for job in stores.jobs.expired_running():
        if stores.jobs.requeue(job.id):
            log.warning("job %s: lease expired (worker %s gone); re-queued", job.id, job.lease_owner)
            try:
                publish(celery_app, job.id, job.queue)
            except Exception as e:  # noqa: BLE001 - a queued row with no message must not be stranded
                stores.jobs.mark_failed(job.id, f"re-queue failed: broker unreachable ({type(e).__name__}: {e})")
                continue
            count += 1
    return count
