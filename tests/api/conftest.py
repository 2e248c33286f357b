"""API fixtures: the app over real stores (a SQLite file, and PostgreSQL for the main flows) and a
real Celery app publishing to a real broker (a SQLite broker file in tmp_path; Redis where a test
asks for it). No worker runs: submitted jobs stay queued, and tests that need results write
predictions and finish jobs through the stores themselves."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from celery import Celery
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlalchemy.engine import URL

from segpipe.api.app import create_app
from segpipe.data.categories import CategoryMap
from segpipe.masks.encode import mask_to_rle
from segpipe.settings import Settings
from segpipe.stores import Stores
from segpipe.stores.models import (
    Job,
    ModelVersion,
    PageSession,
    Prediction,
    PredictionImage,
    PromotionDecision,
    RetrainSlot,
)
from tests.support.auth import ADMIN, ANNOTATOR, ENGINEER, TOKENS  # noqa: F401  (the API tests import them here)
from tests.support.postgres import BACKENDS, pg_database
from tests.support.settings import settings_for
from workers.celery_app import create_app as create_celery

REDIS_URL = os.environ.get("SEGPIPE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """The suite's `settings_for` with authentication on (`TOKENS`) and small upload limits."""
    values: dict[str, Any] = {"tokens": dict(TOKENS), "auth": "on", "max_upload_mb": 1.0, "max_config_kb": 16.0,
                              "max_upload_files": 8}
    return settings_for(tmp_path, **{**values, **overrides})



def production_cells_version(stores: Stores) -> ModelVersion:
    """Model ``cells`` (instance; classes 3 "cell" and 5 "nucleus") as production version 1: its run has a
    ``categories.json`` and a ``best.pt`` that is no checkpoint, so a route that loads the model fails."""
    run = stores.artifacts.root / "models" / "cells" / "run"
    run.mkdir(parents=True)
    (run / "best.pt").write_bytes(b"not a checkpoint: the API must never load it")
    CategoryMap(ids=(3, 5), names=("cell", "nucleus")).save(run / "categories.json")
    version = stores.versions.register("cells", "instance", "{}", checkpoint="models/cells/run/best.pt")
    return stores.versions.promote("cells", version.version)

@pytest.fixture(autouse=True)
def predict_inputs(tmp_path: Path) -> Path:
    """What a valid predict job names, inside the first data root: ``images/`` with one image and a
    ``model/`` run folder with a checkpoint file (submit checks they exist; no worker loads them)."""
    import cv2

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(data / "images" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (data / "model").mkdir(exist_ok=True)
    (data / "model" / "best.pt").write_bytes(b"not loaded at submit")
    return data


@pytest.fixture(scope="session")
def api_pg_url() -> Iterator[URL]:
    with pg_database() as url:
        yield url


def _empty(stores: Stores) -> None:
    with stores.db.write() as session:
        for table in (Prediction, PredictionImage, PromotionDecision, RetrainSlot, ModelVersion, Job, PageSession):
            session.execute(delete(table))


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """Migrated stores on a fresh SQLite file, or on the session's PostgreSQL database (emptied after)."""
    if request.param == "sqlite":
        opened = Stores.open(f"sqlite:///{tmp_path / 'segpipe.db'}", tmp_path / "artifacts")
        yield opened
        opened.close()
        return
    opened = Stores.open(request.getfixturevalue("api_pg_url"), tmp_path / "artifacts")
    yield opened
    _empty(opened)
    opened.close()


@pytest.fixture
def pg_stores(api_pg_url: URL, tmp_path: Path) -> Iterator[Stores]:
    """For checks that are about PostgreSQL itself."""
    opened = Stores.open(api_pg_url, tmp_path / "artifacts")
    yield opened
    _empty(opened)
    opened.close()


@pytest.fixture
def sqlite_stores(tmp_path: Path) -> Iterator[Stores]:
    """For checks that are about the API, not the database."""
    opened = Stores.open(f"sqlite:///{tmp_path / 'segpipe.db'}", tmp_path / "artifacts")
    yield opened
    opened.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def celery_app(settings: Settings) -> Celery:
    return create_celery(settings)


def _client(settings: Settings, stores: Stores, celery_app: Celery) -> Iterator[TestClient]:
    with TestClient(create_app(settings, stores, celery_app)) as client:
        yield client


@pytest.fixture
def client(settings: Settings, stores: Stores, celery_app: Celery) -> Iterator[TestClient]:
    """The app on both backends."""
    yield from _client(settings, stores, celery_app)


@pytest.fixture
def sqlite_client(settings: Settings, sqlite_stores: Stores, celery_app: Celery) -> Iterator[TestClient]:
    """The app on SQLite only."""
    yield from _client(settings, sqlite_stores, celery_app)


# -- stored predictions -------------------------------------------------------------------------------

H, W = 48, 64


def box_mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def disc_mask(cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).astype(np.uint8)


def rows_for(masks: list[np.ndarray], category_id: int = 7, scores: list[float] | None = None) -> list[dict[str, Any]]:
    rows = []
    for i, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        rows.append(
            {
                "category_id": category_id,
                "category_name": "cat",
                "score": scores[i] if scores else 0.9 - 0.1 * i,
                "bbox": [
                    float(xs.min()),
                    float(ys.min()),
                    float(xs.max() - xs.min() + 1),
                    float(ys.max() - ys.min() + 1),
                ],
                "rle": mask_to_rle(mask),
                "height": H,
                "width": W,
            }
        )
    return rows


def claimed_job(stores: Stores, kind: str = "predict", config: str | None = None) -> str:
    """A job as a worker holds it: created, then claimed (running). `finish` ends it."""
    text = config if config is not None else "model: job:none\nimages: /nowhere\n"
    job = stores.jobs.create(kind, text, "gpu")
    assert stores.jobs.claim(job.id, "test-worker", lease_seconds=60).claimed
    return job.id


def finish(stores: Stores, job_id: str, state: str = "succeeded") -> None:
    assert stores.jobs.finish(job_id, "test-worker", state)
