"""Queueing a retraining (under the per-model lock) and recording "dataset changed" signals.

Used by the beat tick (`segpipe.retrain.tick`), ``segpipe retrain NAME`` and the HTTP API. A retrain
job is queued only through `queue_retrain`, never through `segpipe.service.submit`, so "at most one
queued or running retraining per model" holds whoever asks and however many beat processes run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

from segpipe.errors import NotFoundError
from segpipe.jobs.specs import confine_spec, dump_spec
from segpipe.retrain.schedule import ModelSchedule, Schedule, load_schedule
from segpipe.service import BrokerUnavailable, publish
from segpipe.settings import Settings
from segpipe.stores import Job, RetrainSlot, Stores

log = logging.getLogger("segpipe.retrain")


@dataclass(frozen=True)
class Queued:
    """``created`` True: ``job`` was just queued. False: ``job`` is the retraining already queued or
    running for this model, and nothing new was queued."""

    job: Job
    created: bool


class NoSchedule(NotFoundError):
    """No retraining schedule file where the settings (or the caller) say."""


def configured_schedule(settings: Settings, path: str | Path | None = None) -> Schedule:
    """The schedule file at ``path``, else ``SEGPIPE_SCHEDULE`` (default ``configs/schedule.yaml``)."""
    where = Path(path) if path is not None else settings.schedule
    if not where.is_file():
        raise NoSchedule(f"{where}: no retraining schedule file (set SEGPIPE_SCHEDULE, or pass --schedule)")
    return load_schedule(where)


def queue_retrain(
    stores: Stores,
    celery_app: Celery,
    settings: Settings,
    entry: ModelSchedule,
    *,
    trigger: str,
    submitted_by: str | None = None,
) -> Queued:
    """Queue a ``retrain`` job for ``entry`` unless one is queued or running for its model.

    The spec is confined to the data roots like any other job's. If the broker refuses the message
    the job is marked failed (freeing the lock) and `BrokerUnavailable` is raised.
    """
    spec = confine_spec(entry.retrain_spec(trigger), settings.roots, settings.artifacts)
    acquired = stores.retrain.acquire(entry.name, dump_spec(spec), entry.queue, submitted_by=submitted_by)
    if acquired.created:
        job = acquired.job
        try:
            publish(celery_app, job.id, entry.queue)
        except Exception as e:  # noqa: BLE001 - the lock must not wait for a message that was never sent
            stores.jobs.mark_failed(job.id, f"could not queue the job: broker unreachable ({type(e).__name__}: {e})")
            raise BrokerUnavailable(f"job {job.id}: the broker did not accept it ({type(e).__name__}: {e})") from None
        log.info("model %s: queued retrain job %s (%s)", entry.name, job.id, trigger)
    return Queued(acquired.job, acquired.created)


def signal_dataset(stores: Stores, schedule: Schedule, dataset: str) -> list[RetrainSlot]:
    """An annotation tool says ``dataset`` changed: mark every model that watches it for a check.

    The tick checks each such model once ``schedule.debounce`` has passed since the first signal, so
    a burst of signals within that window queues at most one retraining (and none if the content hash
    shows nothing new). `NotFoundError` if no schedule entry watches ``dataset``.
    """
    return [stores.retrain.signal(entry.name) for entry in schedule.watching(dataset)]
