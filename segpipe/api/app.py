"""The HTTP API: ``create_app(settings, stores, celery_app)`` → a FastAPI app (OpenAPI docs at /docs).

Run it with uvicorn's factory mode, configured by the ``SEGPIPE_*`` environment::

    SEGPIPE_TOKENS=secret:engineer SEGPIPE_DATABASE_URL=postgresql://… SEGPIPE_BROKER_URL=redis://… \\
        uvicorn segpipe.api.app:create_app --factory --host 0.0.0.0 --port 8000 --workers 2

    SEGPIPE_AUTH=off uvicorn segpipe.api.app:create_app --factory   # local demo: 127.0.0.1 only

With ``uvloop`` and ``httptools`` installed uvicorn uses them (``--loop auto --http auto``): on the
masks endpoint they cut the server's CPU per request from 1.4–1.7 ms to about 1.0 ms and roughly
doubled the requests/s of one worker (``bench/masks_api.py`` vs ``--plain``, 2 shared cores).

The app only reads the stores and publishes to the broker (`segpipe.service`); workers do the work.
Errors are JSON ``{"error", "detail"}`` (see `segpipe.api.errors` for the status codes: a path outside
the data roots or a job's folder is 403, naming the path). Authentication is bearer tokens with roles
(`segpipe.api.auth`); with no tokens the app refuses to start unless ``SEGPIPE_AUTH=off``, which
serves loopback clients only.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from celery import Celery
from fastapi import FastAPI

from segpipe.api import labelstudio, pages
from segpipe.api.auth import Authenticator
from segpipe.api.deps import ApiContext
from segpipe.api.errors import BodyLimitMiddleware, NulRefusingMiddleware, install_error_handlers
from segpipe.api.image_lookup import JobImageFiles
from segpipe.api.job_task import JobTasks
from segpipe.api.mask_reads import ImageMaskReader
from segpipe.api.openapi import install_openapi
from segpipe.api.request_metrics import RequestMetricsMiddleware
from segpipe.api.routes import (
    datasets,
    health,
    images,
    job_files,
    job_images,
    jobs,
    metrics,
    models,
    snapshots,
    uploads,
)
from segpipe.settings import Settings, get_settings
from segpipe.stores import Stores

# Blocking handlers (store reads, broker publishes, file writes) run in anyio's thread pool. On a few
# cores more threads only contend for the GIL; requests beyond this wait in the limiter's queue.
API_THREADS = 16
LS_BODY_LIMIT = 32 * 1024 * 1024

DESCRIPTION = """Train, evaluate and predict segmentation/detection models as queued jobs, and fetch
their masks. Authenticate with `Authorization: Bearer <token>`; roles: annotator (read) < engineer
(submit, cancel, upload, promote) < admin. Errors are `{"error": "...", "detail": ...}`."""


def _version() -> str:
    try:
        return importlib.metadata.version("segpipe")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def create_app(
    settings: Settings | None = None, stores: Stores | None = None, celery_app: Celery | None = None
) -> FastAPI:
    """The API over ``stores`` (default: opened from ``settings``, closed at shutdown) and ``celery_app``
    (default: `workers.celery_app.create_app(settings)`; used only to publish and revoke).

    Raises `segpipe.errors.ConfigError` when no API tokens are configured and ``SEGPIPE_AUTH`` is not ``off``.
    """
    settings = settings or get_settings()
    auth = Authenticator.from_settings(settings)  # first: refuse to start before opening anything
    owns_stores = stores is None
    stores = stores or Stores.from_settings(settings)
    if celery_app is None:
        from workers.celery_app import create_app as create_celery

        celery_app = create_celery(settings)

    masks = ImageMaskReader(stores.db, pool_size=API_THREADS)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = API_THREADS
        yield
        masks.close()
        if owns_stores:
            stores.close()

    app = FastAPI(title="segpipe", version=_version(), description=DESCRIPTION, lifespan=lifespan)
    # interactive (Label Studio) jobs read their images from the artifact root's inbox
    image_files = JobImageFiles(stores, [*settings.roots, stores.artifacts.inbox])
    app.state.ctx = ApiContext(
        settings=settings, stores=stores, celery=celery_app, tasks=JobTasks(stores), masks=masks, images=image_files
    )
    app.state.auth = auth
    install_error_handlers(app)
    install_openapi(app)
    app.add_middleware(
        BodyLimitMiddleware,
        limit=int(settings.max_config_kb * 1024),
        what="SEGPIPE_MAX_CONFIG_KB",
        exempt=frozenset({"/uploads"}),  # streams its files and limits each one itself
        # Label Studio's requests carry tasks and its webhooks whole annotations (brush masks)
        prefix_limits={"/ls/": (LS_BODY_LIMIT, "Label Studio request")},
    )
    app.add_middleware(NulRefusingMiddleware)
    app.add_middleware(RequestMetricsMiddleware)  # outermost: counts refusals by the others too
    for module in (health, metrics, jobs, job_files, images, models, datasets, uploads, snapshots):
        app.include_router(module.router)
    app.include_router(job_images.router)
    app.include_router(labelstudio.router)  # the Label Studio ML backend under /ls/NAME@production/
    app.include_router(labelstudio.connect_router)  # POST /labelstudio/connect
    pages.install(app)  # the review pages under /ui
    return app
