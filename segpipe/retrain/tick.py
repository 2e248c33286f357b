"""The schedule tick: for each model that is due, hash its dataset and queue a retraining if the data is new.

Celery beat sends ``segpipe.retrain_tick`` every ``SEGPIPE_RETRAIN_TICK_SECONDS``; a worker runs
`run_tick`. Per model (`check_model`):

1. due? — never checked, a "dataset changed" signal older than the debounce window, or its interval /
   cron time has come since the last check (`ModelSchedule.due`);
2. claim the check (compare-and-set on the slot's ``checked_at``), so of several beat processes
   ticking at once exactly one goes on;
3. a retraining already queued or running → nothing to do now; a pending "dataset changed" signal is
   kept (an annotator who saves while a retraining runs is heard once it ends);
4. hash the dataset; if some version of the model was already trained on exactly this content (the
   production one, or a candidate the gate rejected) → unchanged, no job. Comparing with every
   version, not only production, keeps a rejected candidate from being retrained on the same data at
   every tick;
5. otherwise queue a ``retrain`` job through the per-model lock (`queue_retrain`).

The clock is the stores' (``Stores.open(..., now=...)``), so tests decide what "now" is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from celery import Celery

from segpipe.data.dataset_hash import dataset_hash
from segpipe.errors import SegpipeError
from segpipe.retrain.schedule import ModelSchedule, Schedule
from segpipe.retrain.trigger import configured_schedule, queue_retrain
from segpipe.settings import Settings
from segpipe.stores import Stores

log = logging.getLogger("segpipe.retrain")

Outcome = Literal["not-due", "taken", "busy", "unchanged", "queued", "failed"]
Hasher = Callable[[Sequence[Path]], str]


@dataclass(frozen=True)
class TickResult:
    """What one tick did for one model. ``taken``: another tick claimed this check first."""

    name: str
    outcome: Outcome
    detail: str
    job_id: str | None = None
    dataset_hash: str | None = None


def tick(
    stores: Stores, celery_app: Celery, settings: Settings, schedule: Schedule, *, hasher: Hasher = dataset_hash
) -> list[TickResult]:
    """Check every scheduled model once (see the module docstring); one model's failure does not stop the others."""
    results = []
    for entry in schedule.models.values():
        try:
            result = check_model(stores, celery_app, settings, entry, schedule.debounce, hasher=hasher)
        except Exception as e:  # a broken entry or dataset must not stop the other models
            reason = str(e) if isinstance(e, SegpipeError) else f"{type(e).__name__}: {e}"
            log.log(logging.WARNING if isinstance(e, SegpipeError) else logging.ERROR,
                    "model %s: retraining check failed: %s", entry.name, reason, exc_info=not isinstance(e, SegpipeError))
            _note(stores, entry.name, None, f"check failed: {reason}")
            result = TickResult(entry.name, "failed", reason)
        results.append(result)
    return results


def check_model(
    stores: Stores,
    celery_app: Celery,
    settings: Settings,
    entry: ModelSchedule,
    debounce: timedelta,
    *,
    hasher: Hasher = dataset_hash,
) -> TickResult:
    name = entry.name
    now = stores.retrain.now()
    slot = stores.retrain.get(name)
    checked_at = slot.checked_at if slot else None
    why = entry.due(checked_at, slot.signalled_at if slot else None, now, debounce)
    if why is None:
        upcoming = entry.next_check(checked_at) if checked_at else now
        if slot is not None and slot.signalled_at is not None:
            upcoming = min(upcoming, slot.signalled_at + debounce)
        return TickResult(name, "not-due", f"next check at {upcoming:%Y-%m-%d %H:%M:%S} UTC")
    if not stores.retrain.claim_check(name, checked_at):
        return TickResult(name, "taken", "another tick is checking this model")
    active = stores.retrain.active_job(name)
    if active is not None:
        detail = f"retrain job {active.id} is {active.state}"
        if slot is not None and slot.signalled_at is not None:
            # the claim cleared the signal, but that job trains on older data: keep it for a check after it
            stores.retrain.signal(name)
            detail += "; the dataset signal waits for it"
        _note(stores, name, slot.dataset_hash if slot else None, detail)
        return TickResult(name, "busy", detail, job_id=active.id)
    snapshot_note = ""
    if entry.label_studio is not None:  # its data is the project's latest snapshot
        from segpipe.retrain.label_studio_data import entry_on_latest_snapshot

        project = entry.label_studio.project
        entry, snapshot = entry_on_latest_snapshot(stores, settings, entry)
        snapshot_note = f" (snapshot {snapshot.id} of Label Studio project {project})"
    digest = hasher(entry.hash_paths)
    seen = stores.versions.trained_on(name, digest)
    if seen is not None:
        detail = f"unchanged: version {seen.version} ({seen.stage}) was trained on this data{snapshot_note}"
        _note(stores, name, digest, detail)
        return TickResult(name, "unchanged", detail, dataset_hash=digest)
    production = stores.versions.production(name)
    if production is None:
        trigger = f"{why}: no production version yet"
    else:
        trigger = f"{why}: dataset {digest[:19]}… differs from production version {production.version}'s"
    trigger += snapshot_note
    queued = queue_retrain(stores, celery_app, settings, entry, trigger=trigger, submitted_by="schedule")
    if not queued.created:  # another process queued one between our check and now
        detail = f"retrain job {queued.job.id} is {queued.job.state}"
        _note(stores, name, digest, detail)
        return TickResult(name, "busy", detail, job_id=queued.job.id, dataset_hash=digest)
    detail = f"queued retrain job {queued.job.id} ({trigger})"
    _note(stores, name, digest, detail)
    return TickResult(name, "queued", detail, job_id=queued.job.id, dataset_hash=digest)


def run_tick(stores: Stores, celery_app: Celery, settings: Settings) -> list[TickResult]:
    """The beat task's body: load ``SEGPIPE_SCHEDULE`` afresh and tick. No schedule file → nothing to do."""
    if not settings.schedule.is_file():
        log.debug("no schedule file at %s: nothing to retrain", settings.schedule)
        return []
    try:
        schedule = configured_schedule(settings)
    except SegpipeError as e:
        log.error("schedule %s is invalid, no model checked: %s", settings.schedule, e)
        return []
    results = tick(stores, celery_app, settings, schedule)
    for r in results:
        if r.outcome not in ("not-due", "taken"):
            log.info("model %s: %s", r.name, r.detail)
    return results


def _note(stores: Stores, name: str, digest: str | None, note: str) -> None:
    try:
        stores.retrain.note_check(name, digest, note[:2000])
    except Exception:  # bookkeeping only; the outcome is already decided
        log.exception("model %s: could not record the check", name)
