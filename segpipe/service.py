"""Submitting, cancelling and re-queuing jobs: the store row first, then the queue message.

Used by the HTTP API, the CLI and the beat schedule. A job id is its Celery task id. A spec that
arrives here is untrusted: it is size-limited, validated and every path confined to the data roots.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from segpipe import job_kinds
from segpipe.config import parse_yaml
from segpipe.errors import ConfigError, SegpipeError
from segpipe.jobs.kinds import spec_model
from segpipe.jobs.preflight import preflight
from segpipe.jobs.specs import Spec, confine_spec, dump_spec, parse_spec
from segpipe.metrics.definitions import LEASE_EXPIRIES, REPUBLISHED
from segpipe.safe_yaml import DocumentTooLarge, check_structure
from segpipe.settings import Settings
from segpipe.stores import Job, Stores

log = logging.getLogger("segpipe.service")

RUN_JOB = "segpipe.run_job"
# A queued job is checked for a lost message once it has waited this long since it was (re)published:
# longer than submit's gap between writing the row and publishing the message.
LOST_AFTER_SECONDS = 30.0


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
    if kind not in job_kinds.submittable():
        raise ConfigError(f"unknown job kind {kind!r}; known: {', '.join(job_kinds.submittable())}")
    limit = int(settings.max_config_kb * 1024)
    if isinstance(spec, str):
        if len(spec.encode()) > limit:
            raise DocumentTooLarge(f"job config is larger than {settings.max_config_kb:g} KB")
        spec = parse_yaml(spec, source=f"{kind} job")  # no aliases; bounded depth and size
    else:
        check_structure(spec, source=f"{kind} job")
    parsed = confine_spec(parse_spec(kind, spec, source=f"{kind} job"), settings.roots, settings.artifacts)
    if queue is not None and queue not in job_kinds.QUEUES:
        raise ConfigError(f"unknown queue {queue!r}; known: {', '.join(job_kinds.QUEUES)}")
    queue = queue or job_kinds.get(kind).queue
    name = model_name or (getattr(parsed, "name", None) if job_kinds.has(kind, job_kinds.MODEL) else None)
    preflight(kind, parsed, stores, settings)  # what the worker will build, short of running it
    stored = dump_spec(parsed)
    if len(stored.encode()) > limit:  # the limit holds for what is stored, not only for what came in
        raise DocumentTooLarge(f"job config is larger than {settings.max_config_kb:g} KB once resolved")
    return _create_and_publish(stores, celery_app, kind, stored, queue, submitted_by=submitted_by, model_name=name)


def enqueue(stores: Stores, celery_app: Celery, kind: str, spec: Spec, *, submitted_by: str | None = None,
            model_name: str | None = None) -> Job:
    """Store and publish a job that segpipe itself queues (a kind people may not submit), on its kind's
    queue. ``spec`` is built by segpipe, not taken from a request, so it skips `submit`'s checks."""
    model = spec_model(kind)
    if model is None or not isinstance(spec, model):
        raise TypeError(f"a {kind} job needs a {model} spec, got {type(spec).__name__}")
    return _create_and_publish(stores, celery_app, kind, dump_spec(spec), job_kinds.get(kind).queue, submitted_by=submitted_by,
                               model_name=model_name)


def _create_and_publish(stores: Stores, celery_app: Celery, kind: str, stored: str, queue: str, *,
                        submitted_by: str | None, model_name: str | None) -> Job:
    job = stores.jobs.create(kind, stored, queue, submitted_by=submitted_by, model_name=model_name)
    try:
        publish(celery_app, job.id, queue)
    except Exception as e:  # noqa: BLE001 - the row must not wait for a message that was never sent
        stores.jobs.mark_failed(job.id, f"could not queue the job: broker unreachable ({type(e).__name__}: {e})")
        raise BrokerUnavailable(f"job {job.id}: the broker did not accept it ({type(e).__name__}: {e})") from None
    return job


class BrokerUnavailable(SegpipeError):
    """The job row was written but its message could not be published (the job is marked failed)."""


def publish(celery_app: Celery, job_id: str, queue: str) -> None:
    celery_app.send_task(RUN_JOB, args=[job_id], task_id=job_id, queue=queue)


def cancel(stores: Stores, celery_app: Celery, job_id: str) -> str:
    """Queued jobs are cancelled at once (and their message revoked); running ones stop at their next
    step with their checkpoint kept. A sharded predict job cancels its shards the same way and ends
    cancelled once they all have. Returns the job's state after the request."""
    state = _cancel_one(stores, celery_app, job_id)
    children = stores.shards.children(job_id)
    for child in children:
        if not child.terminal:
            _cancel_one(stores, celery_app, child.id)
    if children and stores.shards.all_finished(job_id) and stores.shards.release(job_id):
        # no shard is left to hand the parent back: its claim now records it as cancelled
        stores.jobs.claim(job_id, "cancel", 0.0)
        state = stores.jobs.get(job_id).state
    return state


def _cancel_one(stores: Stores, celery_app: Celery, job_id: str) -> str:
    state = stores.jobs.request_cancel(job_id)
    if state == "cancelled":
        try:
            celery_app.control.revoke(job_id)
        except Exception:  # noqa: BLE001 - the store already says cancelled: a delivered message is dropped by claim()
            log.info("job %s: revoke not delivered; the worker will skip it", job_id)
    return state


def reconcile(stores: Stores, celery_app: Celery, *, lost_after_seconds: float = LOST_AFTER_SECONDS) -> int:
    """Re-queue running jobs whose lease expired (their worker died) so none is orphaned, even when
    its message was already acknowledged; then re-publish queued jobs whose message is gone (a broker
    restarted without persistence). Returns how many were re-published."""
    count = 0
    for job in stores.jobs.expired_running():
        if stores.jobs.requeue(job.id):
            log.warning("job %s: lease expired (worker %s gone); re-queued", job.id, job.lease_owner)
            LEASE_EXPIRIES.inc()
            try:
                publish(celery_app, job.id, job.queue)
            except Exception as e:  # noqa: BLE001 - a queued row with no message must not be stranded
                stores.jobs.mark_failed(job.id, f"re-queue failed: broker unreachable ({type(e).__name__}: {e})")
                continue
            count += 1
    return count + len(republish_lost(stores, celery_app, lost_after_seconds=lost_after_seconds))


def republish_lost(
    stores: Stores, celery_app: Celery, *, lost_after_seconds: float = LOST_AFTER_SECONDS, job_ids: list[str] | None = None
) -> list[str]:
    """Publish again the queued jobs (older than `lost_after_seconds`, or exactly `job_ids`) that have
    no message in the broker, neither waiting nor delivered. Idempotent: a job whose message is there
    is left alone, and a duplicate delivered anyway (a message in flight between the queue and the
    worker's unacked set at the moment we look) is dropped by the claim. Returns the ids re-published."""
    from datetime import timedelta

    from segpipe.broker_messages import job_ids_in_broker

    if job_ids is None:
        candidates = stores.jobs.queued_before(stores.jobs.now() - timedelta(seconds=lost_after_seconds))
    else:
        candidates = [job for job in map(stores.jobs.get, job_ids) if job.state == "queued"]
    if not candidates:
        return []
    present = job_ids_in_broker(celery_app, {job.queue for job in candidates})
    if present is None:
        return []
    republished = []
    for job in candidates:
        current = stores.jobs.find(job.id)
        if job.id in present or current is None or current.state != "queued":
            continue
        log.warning("job %s: queued but its message is gone from the broker; re-published", job.id)
        publish(celery_app, job.id, job.queue)
        stores.jobs.touch(job.id)
        REPUBLISHED.inc()
        republished.append(job.id)
    return republished
