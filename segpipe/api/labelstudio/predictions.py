"""Predictions for Label Studio tasks from one model version: stored ones, else a short interactive job.

1. Stored: a succeeded predict job of exactly that version that already processed the image. Candidate
   keys are the image's content hash (what interactive jobs key by) and, for a file inside the data
   roots, its path relative to each parent folder without suffix (what folder jobs key by) plus a
   ``segpipe_image_id`` the task may carry (exports write it); a path-derived hit counts only if that
   job's own image for the key is the very same file.
2. Otherwise the images (admitted already: `segpipe.data.admission`) go, named by content hash, into a
   fresh folder under the artifact root (``ls-inbox/``; refused with 503 past ``SEGPIPE_LS_INBOX_MAX_MB``
   or without disk space; the worker removes the folder when the job ends), and ONE predict job for all of
   them is queued on the ``interactive`` queue (a
   `segpipe worker -Q interactive` serves it: the API never builds a model). The request waits for it
   up to ``SEGPIPE_LS_PREDICT_TIMEOUT`` seconds; past that it answers 503 with the job id, and a retry
   then finds the stored predictions.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from segpipe import service
from segpipe.api.deps import ApiContext
from segpipe.api.errors import ApiError
from segpipe.api.labelstudio.model_info import ModelInfo
from segpipe.api.labelstudio.task_images import TaskImage
from segpipe.errors import SegpipeError
from segpipe.job_kinds import INBOX, PREDICTIONS, with_capability
from segpipe.storage.disk import MB, DiskFull, ensure_free, write_bytes_atomic
from segpipe.stores.models import TERMINAL_STATES, Job, PredictionImage, utcnow

POLL_SECONDS = 0.1
MAX_PATH_DEPTH = 8
FAILURE_MEMORY_SECONDS = 300.0  # how long a failed interactive job keeps the backend in error
# what the backend queues: predictions, and masks of drawn boxes (the kinds whose images are in the inbox)
INTERACTIVE_KINDS = with_capability(INBOX)


@dataclass(frozen=True)
class Found:
    job_id: str
    image_key: str
    rows: list[Any]  # stored PredictionRow objects, by instance number
    height: int
    width: int
    cached: bool
    uncertainty: float | None = None  # the model's, about the whole image (segpipe.models.uncertainty)


def content_key(image: TaskImage) -> str:
    return hashlib.sha256(image.content).hexdigest()[:40]


def path_keys(path: Path) -> list[str]:
    """``a/b/c.png`` → ``c``, ``b/c``, ``a/b/c`` …: the keys a folder job over any parent would have given it."""
    stem = path.with_suffix("")
    parts = stem.parts
    return ["/".join(parts[-n:]) for n in range(1, min(len(parts), MAX_PATH_DEPTH) + 1)]


def _stored_jobs(ctx: ApiContext, model: ModelInfo, keys: Sequence[str]) -> list[tuple[str, str]]:
    """(job_id, image_key) of succeeded predict jobs of the version with any of ``keys``, newest first."""
    query = (
        select(PredictionImage.job_id, PredictionImage.image_key)
        .join(Job, Job.id == PredictionImage.job_id)
        .where(
            PredictionImage.image_key.in_(list(keys)),
            Job.kind.in_(with_capability(PREDICTIONS)),
            Job.state == "succeeded",
            Job.model_name == model.name,
            Job.model_version == model.version,
        )
        .order_by(Job.finished_at.desc(), Job.id.desc())
        .limit(20)
    )
    with ctx.stores.db.read() as session:
        return [(job_id, key) for job_id, key in session.execute(query)]


def find_stored(ctx: ApiContext, model: ModelInfo, image: TaskImage, image_id: object = None) -> Found | None:
    """The stored predictions of ``model`` for ``image``, or None."""
    by_content = content_key(image)
    keys = [by_content]
    if image.local_path is not None:
        keys += path_keys(image.local_path)
    if image_id is not None:
        keys.append(str(image_id))
    for job_id, key in _stored_jobs(ctx, model, keys):
        if key != by_content:
            try:
                if ctx.images.path(job_id, key) != image.local_path:
                    continue
            except SegpipeError:
                continue
        read = ctx.masks.read(key, job_id)
        if read is not None and read.height is not None and read.width is not None:
            return Found(job_id, key, read.rows(), read.height, read.width, cached=True,
                         uncertainty=ctx.stores.predictions.uncertainty(job_id, key))
    return None


def write_inbox(ctx: ApiContext, images: Sequence[tuple[str, TaskImage]]) -> Path:
    """A fresh inbox folder holding ``images`` (already admitted), each written under a temporary name and
    renamed. 503 when the inbox is over ``SEGPIPE_LS_INBOX_MAX_MB`` with them (the worker empties it as
    jobs end) or the disk lacks room; the answer never shows a path of this server."""
    inbox = ctx.stores.artifacts.inbox
    incoming = sum(len(image.content) for _key, image in images)
    quota = int(ctx.settings.ls_inbox_max_mb * MB)
    used = folder_bytes(inbox)
    if used + incoming > quota:
        raise ApiError(503, f"the Label Studio inbox is full: {used / MB:.2f} MB waiting for workers plus "
                            f"{incoming / MB:.2f} MB in this request is over {ctx.settings.ls_inbox_max_mb:g} MB "
                            "(SEGPIPE_LS_INBOX_MAX_MB); "
                            "try again when the queued predictions have run", headers={"Retry-After": "30"})
    folder = inbox / uuid.uuid4().hex
    try:
        ensure_free(inbox, incoming)
        folder.mkdir(parents=True)
        for key, image in images:
            write_bytes_atomic(folder / f"{key}{image.suffix}", image.content)
    except DiskFull:
        shutil.rmtree(folder, ignore_errors=True)
        raise ApiError(503, f"no disk space for {incoming / MB:.1f} MB of task images on this server; "
                            "an operator must free space (see docs/operations.md)", headers={"Retry-After": "60"}) from None
    return folder


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when it does not exist)."""
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):  # removed meanwhile by a worker ending its job
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def public_reason(text: str, folder: Path, ctx: ApiContext) -> str:
    """A job's reason without this server's paths: inbox file names become their content keys."""
    return (text.replace(f"{folder}/", "").replace(str(folder), "(inbox folder)")
            .replace(str(ctx.stores.artifacts.root), "(artifact root)"))


def predict_now(ctx: ApiContext, model: ModelInfo, images: Sequence[TaskImage], submitted_by: str) -> dict[str, Found]:
    """Queue one interactive predict job for ``images`` and wait for it: content key → `Found`.

    503 (naming the job and the timeout) when it has not finished within ``ls_predict_timeout``; 503
    with the job's error when it failed.
    """
    keys = {content_key(image): image for image in images}
    folder = write_inbox(ctx, list(keys.items()))
    spec = {"model": model.label, "images": str(folder), "device": "cpu", "predict": {"formats": ["coco-results"]}}
    settings = ctx.settings
    roots_settings = settings.model_copy(update={"data_roots": [*settings.roots, ctx.stores.artifacts.inbox]})
    try:
        job = service.submit(ctx.stores, ctx.celery, roots_settings, "predict", spec, submitted_by=submitted_by,
                             queue="interactive", model_name=model.name)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # no job will ever read it
        raise
    # the version is known now (model.label names it): a job no worker takes is then found by
    # `interactive_trouble`, which looks jobs up by version
    ctx.stores.jobs.record_model(job.id, model.name, model.version)
    deadline = time.monotonic() + settings.ls_predict_timeout
    while True:
        state = ctx.stores.jobs.get(job.id)
        if state.state in TERMINAL_STATES:
            break
        if time.monotonic() > deadline:
            raise ApiError(
                503,
                f"predictions for {len(images)} image(s) are not ready within the {settings.ls_predict_timeout:g} s "
                f"timeout (SEGPIPE_LS_PREDICT_TIMEOUT); interactive job {job.id} is still {state.state} on the "
                "'interactive' queue: ask again later and they will come from the store",
                detail={"job_id": job.id, "timeout_seconds": settings.ls_predict_timeout},
                headers={"Retry-After": "10"},
            )
        time.sleep(POLL_SECONDS)
    if state.state != "succeeded":
        reason = public_reason(state.error or "no reason recorded", folder, ctx)
        raise ApiError(503, f"interactive predict job {job.id} {state.state}: {reason}", detail={"job_id": job.id})
    failed = dict(ctx.stores.predictions.failures(job.id))
    found = {}
    for key in keys:
        if key in failed:
            raise ApiError(422, f"image {key} (content hash) could not be read: {public_reason(failed[key], folder, ctx)}",
                           detail={"job_id": job.id, "image_key": key})
        read = ctx.masks.read(key, job.id)
        if read is None or read.height is None or read.width is None:
            raise ApiError(503, f"interactive predict job {job.id} stored nothing for image {key}")
        found[key] = Found(job.id, key, read.rows(), read.height, read.width, cached=False,
                           uncertainty=ctx.stores.predictions.uncertainty(job.id, key))
    return found


@dataclass(frozen=True)
class Trouble:
    reason: str
    stuck: bool  # a job waits unserved: a new one would only wait behind it


def interactive_trouble(ctx: ApiContext, model: ModelInfo) -> Trouble | None:
    """Why predictions for ``model`` cannot be answered now, or None.

    Label Studio reports a failed ``predict`` call nowhere its users look (its "retrieve predictions"
    action says "Retrieved N predictions" whatever happened), but it checks ``setup`` before every
    prediction round and shows a failing backend as "Error" in Settings → Model. So ``setup`` answers
    503 while this returns a reason: the model's newest interactive job (a prediction or a drawn box's
    mask) has waited past the timeout (no worker serves the ``interactive`` queue), or failed in the
    last few minutes.
    """
    query = (
        select(Job)
        .where(Job.kind.in_(INTERACTIVE_KINDS), Job.queue == "interactive", Job.model_name == model.name,
               Job.model_version == model.version)
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(1)
    )
    with ctx.stores.db.read() as session:
        job = session.execute(query).scalar_one_or_none()
        if job is None:
            return None
        job_id, state, error, created, finished = job.id, job.state, job.error, job.created_at, job.finished_at
    now = utcnow()
    timeout = ctx.settings.ls_predict_timeout
    if state not in TERMINAL_STATES:
        waited = (now - created).total_seconds()
        if waited > timeout:
            return Trouble(f"interactive job {job_id} for {model.label} is still {state} after {waited:.0f} s (the "
                           f"timeout is {timeout:g} s): no worker serves the 'interactive' queue; start `segpipe "
                           "worker`", stuck=True)
        return None
    if state == "failed" and finished is not None:
        ago = (now - finished).total_seconds()
        if ago < FAILURE_MEMORY_SECONDS:
            return Trouble(f"interactive job {job_id} for {model.label} failed {ago:.0f} s ago: "
                           f"{error or 'no reason recorded'}", stuck=False)
    return None

