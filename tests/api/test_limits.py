"""Limits at the doors (issue 22, points 1, 3 and 4): names over the filesystem's and the database's
limits get a 422 naming the field, not a 500 or a later job failure; images over the pixel limit are
refused at upload and at the Label Studio backend before anything is written; the backend's inbox has
a quota; a value the database cannot hold is named. Runs on SQLite and PostgreSQL where the store matters."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy.exc import StatementError

from segpipe.api.app import create_app
from segpipe.settings import Settings
from segpipe.stores import Stores
from segpipe.stores.db_errors import explain
from tests.api.conftest import ENGINEER, claimed_job, make_settings, production_cells_version
from tests.support.hostile_files import png_bomb
from workers.celery_app import create_app as create_celery

LONG = "n" * 300  # one path component of 300 bytes: over NAME_MAX (255)
ANN_BASIC = {"Authorization": "Basic " + base64.b64encode(b"label-studio:ann-token").decode()}


def _error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["error"])


def test_artifact_path_over_name_max_is_422_naming_it(client: TestClient, stores: Stores) -> None:
    job_id = claimed_job(stores)
    error = _error(client.get(f"/jobs/{job_id}/artifacts/{LONG}.json", headers=ENGINEER), 422)
    assert f"artifact path '{LONG}.json' of job {job_id}" in error and "305 bytes; at most 255" in error
    deep = "/".join(["d" * 200] * 25)  # every name fits, the path (5024 bytes) does not
    assert "at most 4096 fit" in _error(client.get(f"/jobs/{job_id}/artifacts/{deep}", headers=ENGINEER), 422)


@pytest.mark.parametrize(("config", "field"), [
    ({"model": "model", "images": f"images/{LONG}"}, "images"),
    ({"model": f"model/{LONG}/best.pt", "images": "images"}, "model"),
])
def test_submitted_paths_over_name_max_are_422(sqlite_client: TestClient, config: dict[str, str], field: str) -> None:
    error = _error(sqlite_client.post("/jobs", json={"kind": "predict", "config": config}, headers=ENGINEER), 422)
    assert error.startswith(field) and "300 bytes; at most 255 fit in one path component" in error


def test_class_name_over_the_column_is_422_at_submit(sqlite_client: TestClient, settings: Settings) -> None:
    (settings.roots[0] / "ok").mkdir()
    train = {"task": "semantic", "model": {"name": "unet"},
             "data": {"train": {"images": "ok", "masks": "ok"}, "classes": ["background", "c" * 300]}}
    error = _error(sqlite_client.post("/jobs", json={"kind": "train", "config": train}, headers=ENGINEER), 422)
    assert "data.classes: [1]: the class name 'cccc" in error and "is 300 characters; at most 255 fit" in error


def test_image_key_over_the_column_is_422_at_submit(sqlite_client: TestClient, settings: Settings) -> None:
    folder = settings.roots[0] / "deep"
    nested = folder.joinpath(*(["k" * 250] * 5))  # a key of 1254 characters; the column holds 1024
    nested.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(nested / "a.png")
    config = {"model": "model", "images": "deep"}
    error = _error(sqlite_client.post("/jobs", json={"kind": "predict", "config": config}, headers=ENGINEER), 422)
    assert "the image key 'kkkk" in error and "is 1256 characters; at most 1024 fit (predictions.image_key)" in error


def test_upload_of_144_megapixels_is_413_naming_the_limit(sqlite_client: TestClient, tmp_path: Path) -> None:
    """The upload door let 144-megapixel images through (Pillow's own limit is 179 MP); a predict then
    needed 1.7 GB. Now the one admission applies there too."""
    bomb = png_bomb(tmp_path / "big.png", 12000, 12000).read_bytes()
    error = _error(sqlite_client.post("/uploads", files=[("files", ("big.png", bomb, "image/png"))],
                                      headers=ENGINEER), 413)
    assert error == ("file 'big.png': image is 144.0 megapixels, over the 40-megapixel limit "
                     "(SEGPIPE_MAX_IMAGE_MEGAPIXELS)")


def test_database_errors_name_the_value_that_did_not_fit(stores: Stores) -> None:
    """PostgreSQL refuses a 300-character class name with "value too long for type character varying(255)"
    and SQLAlchemy adds the statement and "(Background on this error at: …)"; the reason names the column.
    SQLite stores it: the door checks (above) keep both backends the same."""
    job_id = claimed_job(stores)
    row = {"instance": 0, "category_id": 1, "category_name": "x" * 300, "score": 0.5, "bbox": [0, 0, 1, 1],
           "rle": None, "height": 4, "width": 4}
    if stores.db.dialect == "sqlite":
        assert stores.predictions.write_image(job_id, "a", [row])
        return
    with pytest.raises(StatementError) as caught:
        stores.predictions.write_image(job_id, "a", [row])
    reason = explain(caught.value)
    assert reason == ("the database cannot hold predictions.category_name: a value of 300 characters "
                      f"({'x' * 40 + '…'!r}) does not fit (at most 255)")
    assert "Background on this error" not in reason


@pytest.fixture
def ls(tmp_path: Path, stores: Stores) -> dict[str, Any]:
    data = tmp_path / "data"
    (data / "batch").mkdir(parents=True)
    settings = make_settings(tmp_path, label_studio_files_root=data, ls_predict_timeout=0.3, max_upload_mb=2.0,
                             ls_inbox_max_mb=0.05)
    production_cells_version(stores)
    with TestClient(create_app(settings, stores, create_celery(settings))) as client:
        yield {"client": client, "stores": stores, "data": data, "settings": settings}


def _predict(ls: dict[str, Any], image: str) -> Any:
    return ls["client"].post("/ls/cells@production/predict", headers=ANN_BASIC,
                             json={"tasks": [{"id": 1, "data": {"image": image}}]})


def test_label_studio_task_image_over_name_max_is_422(ls: dict[str, Any]) -> None:
    error = _error(_predict(ls, f"/data/local-files/?d=batch/{LONG}.png"), 422)
    assert error.startswith("task 1 image") and "304 bytes; at most 255" in error


def test_label_studio_refuses_a_pixel_bomb_before_writing_it(ls: dict[str, Any]) -> None:
    png_bomb(ls["data"] / "batch" / "bomb.png", 20000, 20000)
    error = _error(_predict(ls, "/data/local-files/?d=batch/bomb.png"), 413)
    assert error == ("task 1: image '/data/local-files/?d=batch/bomb.png': image is 400.0 megapixels, over the "
                     "40-megapixel limit (SEGPIPE_MAX_IMAGE_MEGAPIXELS)")
    inbox = ls["stores"].artifacts.inbox
    assert not inbox.exists() or not any(inbox.iterdir())
    assert ls["stores"].jobs.list()[1] == 0  # no job was queued for it


def test_label_studio_inbox_quota_is_503_without_server_paths(ls: dict[str, Any]) -> None:
    """An annotator could fill the disk: every task image went into the inbox, unchecked and never removed."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(ls["data"] / "batch" / "a.png")
    inbox = ls["stores"].artifacts.inbox
    (inbox / "waiting").mkdir(parents=True)
    (inbox / "waiting" / "queued.png").write_bytes(b"x" * 50_000)  # 0.05 MB is 52429 bytes
    answer = _predict(ls, "/data/local-files/?d=batch/a.png")
    error = _error(answer, 503)
    assert error.startswith("the Label Studio inbox is full: 0.05 MB waiting for workers plus 0.01 MB in this "
                            "request is over 0.05 MB (SEGPIPE_LS_INBOX_MAX_MB)"), error
    assert answer.headers["Retry-After"] == "30"
    assert str(ls["stores"].artifacts.root) not in answer.text and str(ls["data"]) not in answer.text
    assert sorted(p.name for p in inbox.iterdir()) == ["waiting"] and ls["stores"].jobs.list()[1] == 0
    # within the quota: written (under a temporary name, renamed) and queued; the 503 names no path
    (inbox / "waiting" / "queued.png").unlink()
    answer = _predict(ls, "/data/local-files/?d=batch/a.png")
    assert _error(answer, 503).startswith("predictions for 1 image(s) are not ready")
    assert str(ls["stores"].artifacts.root) not in answer.text
    (folder,) = [p for p in inbox.iterdir() if p.name != "waiting"]
    assert [p.suffix for p in folder.iterdir()] == [".png"]
