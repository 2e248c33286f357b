"""What every route gets from the app: settings, the stores, the Celery app (used only to publish) and caches."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from fastapi import Request

from segpipe.api.mask_reads import ImageMaskReader
from segpipe.settings import Settings
from segpipe.stores import Stores


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    stores: Stores
    celery: Celery
    masks: ImageMaskReader  # the masks endpoint's single-statement read path


def context(request: Request) -> ApiContext:
    """FastAPI dependency: the context `create_app` put on the app."""
    return request.app.state.ctx
