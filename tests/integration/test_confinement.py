"""The worker confines what a job reads and writes even when the data changed after submit (submit
refuses the same things earlier: tests/api/test_hardening.py). Runs the worker's own entry point,
`segpipe.jobs.execute.run_job`, on a PostgreSQL store, with the job rows written as submit would have."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from segpipe.jobs.execute import run_job
from segpipe.jobs.specs import dump_spec, parse_spec
from segpipe.settings import Settings
from segpipe.stores import Stores
from tests.integration.conftest import binary_train_spec, predict_spec
from tests.stores.conftest import create_pg_database, drop_pg_database

pytestmark = [pytest.mark.integration]


@pytest.fixture
def setup(tmp_path: Path, tiny_model: Path) -> Iterator[tuple[Stores, Settings, Path, Path]]:
    pg_url = create_pg_database()
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    settings = Settings(home=tmp_path / "home", database_url=pg_url.render_as_string(hide_password=False),
                        data_roots=[data, tiny_model.parent], artifact_root=tmp_path / "artifacts")
    stores = Stores.open(pg_url, settings.artifacts)
    try:
        yield stores, settings, data, outside
    finally:
        stores.close()
        drop_pg_database(pg_url)


def _queued(stores: Stores, kind: str, spec: dict) -> str:
    return stores.jobs.create(kind, dump_spec(parse_spec(kind, spec)), "gpu").id


@pytest.mark.parametrize("escape", ["absolute", "dotdot"])
def test_predict_image_list_changed_after_submit_is_refused_by_the_worker(
    setup: tuple[Stores, Settings, Path, Path], tiny_model: Path, escape: str
) -> None:
    stores, settings, data, outside = setup
    images = data / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((32, 32, 3), np.uint8))
    cv2.imwrite(str(outside / "secret.png"), np.full((32, 32, 3), 200, np.uint8))
    name = str(outside / "secret.png") if escape == "absolute" else "../../outside/secret"
    ann = data / "list.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "height": 32, "width": 32},
                                          {"id": 2, "file_name": name + ("" if escape == "absolute" else ".png"),
                                           "height": 32, "width": 32}],
                               "annotations": [], "categories": [{"id": 1, "name": "shape"}]}))
    spec = {**predict_spec(tiny_model, images), "annotations": str(ann)}
    spec["predict"]["formats"] = ["png", "overlay"]
    job_id = _queued(stores, "predict", spec)
    assert run_job(job_id, stores=stores, settings=settings, owner="test") == "failed"
    job = stores.jobs.get(job_id)
    assert "image 2" in job.error and "file_name" in job.error, job.error
    assert sorted(p.name for p in outside.iterdir()) == ["secret.png"]  # nothing written beside it
    written = [p for p in settings.artifacts.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(stores.artifacts.job_dir(job_id).resolve()) for p in written)


def test_symlinked_image_is_never_read_by_a_training_job(setup: tuple[Stores, Settings, Path, Path]) -> None:
    from segpipe.data.synthetic import make_shapes_coco

    stores, settings, data, outside = setup
    coco = make_shapes_coco(data / "shapes", n_images=3, size=(32, 32), seed=7)
    entry = json.loads(coco.annotations.read_text())["images"][0]
    target = coco.images / entry["file_name"]
    moved = outside / "moved.png"
    target.rename(moved)
    target.symlink_to(moved)  # a file inside the root that leads out of it
    job_id = _queued(stores, "train", binary_train_spec(coco.images, coco.annotations, epochs=1))
    assert run_job(job_id, stores=stores, settings=settings, owner="test") == "failed"
    error = stores.jobs.get(job_id).error
    assert f"image {entry['id']}" in error and "outside" in error, error
