"""What every route gets from the app: settings, the stores, the Celery app (used only to publish) and caches."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from fastapi import Request

from segpipe.api.image_lookup import JobImageFiles
from segpipe.api.job_task import JobTasks
from segpipe.api.mask_reads import ImageMaskReader
from segpipe.settings import Settings
from segpipe.stores import Stores


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    stores: Stores
    celery: Celery
    tasks: JobTasks  # which task kind each job's predictions come from (cached; the review pages ask)
    masks: ImageMaskReader  # the masks endpoint's single-statement read path
    images: JobImageFiles  # a predict job's image key → its source file, inside the data roots


def context(request: Request) -> ApiContext:
    """FastAPI dependency: the context `create_app` put on the app."""
    return request.app.state.ctx
