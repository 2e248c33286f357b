"""Broken jobs fail with a one-line reason that names the problem, and the worker goes on serving."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from segpipe.data.synthetic import make_shapes_coco
from tests.integration.conftest import ENGINEER, Service, binary_train_spec, predict_spec


@pytest.mark.integration
def test_broken_jobs_fail_with_a_clear_reason_and_the_worker_serves_the_next(svc: Service, tiny_model: Path) -> None:
    folder = svc.data_dir("broken")
    coco = make_shapes_coco(folder / "bad", n_images=3, size=(32, 32), seed=4, empty_images=0, rle=False, crowd=False)
    dataset = json.loads(coco.annotations.read_text())
    bad = dataset["annotations"][1]
    bad["segmentation"] = [[2.0, 2.0, 9.0, 2.0]]  # 4 coordinates: a segment, not a polygon
    coco.annotations.write_text(json.dumps(dataset))
    bad_polygon = svc.submit("train", binary_train_spec(coco.images, coco.annotations, epochs=1))
    # data that does not exist is refused at submit, naming the path ...
    nowhere = binary_train_spec(folder / "nowhere" / "images", folder / "nowhere" / "annotations.json", epochs=1)
    refused = svc.client.post("/jobs", json={"kind": "train", "config": nowhere}, headers=ENGINEER)
    assert refused.status_code == 422 and "nowhere" in refused.json()["error"], refused.text
    # ... data that disappears after submit fails on the worker, naming it
    gone_later = make_shapes_coco(folder / "missing", n_images=2, size=(32, 32), seed=5)
    missing = svc.submit("train", binary_train_spec(gone_later.images, gone_later.annotations, epochs=1))
    shutil.rmtree(folder / "missing")
    good = svc.submit("predict", predict_spec(tiny_model, coco.images))

    failed = svc.wait_done(bad_polygon, expect="failed")
    reason = failed["error"]
    assert "\n" not in reason and len(reason) <= 500
    assert f"annotation {bad['id']}" in reason and f"image {bad['image_id']}" in reason, reason
    assert "polygon" in reason and "4 coordinates" in reason, reason
    assert failed["traceback"] and "Traceback" in failed["traceback"]

    gone = svc.wait_done(missing, expect="failed")
    assert "\n" not in gone["error"] and "missing" in gone["error"], gone["error"]

    served = svc.wait_done(good)
    assert served["progress"]["images_done"] == 3
    owner = svc.owner_of(svc.main)
    assert failed["worker"] == gone["worker"] == served["worker"] == owner
    assert svc.main.alive()
