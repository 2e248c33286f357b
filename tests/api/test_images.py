from __future__ import annotations

import io

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from segpipe.masks.encode import polygons_to_mask, rle_to_mask
from segpipe.stores import Stores
from tests.api.conftest import ANNOTATOR, H, W, box_mask, claimed_job, disc_mask, finish, rows_for

MASKS = [box_mask(4, 20, 5, 30), disc_mask(32, 45, 9)]


def _png(content: bytes) -> np.ndarray:
    """Pixel values as stored (palette indices for the class map, gray levels for the instance map)."""
    return np.asarray(Image.open(io.BytesIO(content)))


def test_one_image_in_every_format_decodes_to_the_same_masks(client: TestClient, stores: Stores) -> None:
    job_id = claimed_job(stores)
    stores.predictions.write_image(job_id, "sub/dir/img1", rows_for(MASKS))
    finish(stores, job_id)

    r = client.get("/images/sub/dir/img1/masks", headers=ANNOTATOR)
    assert r.status_code == 200 and r.headers["x-segpipe-job"] == job_id
    body = r.json()
    assert (body["image_key"], body["job_id"], body["height"], body["width"]) == ("sub/dir/img1", job_id, H, W)
    assert [(i["instance"], i["category_id"], i["category_name"]) for i in body["instances"]] == [
        (0, 7, "cat"),
        (1, 7, "cat"),
    ]
    for inst, mask in zip(body["instances"], MASKS, strict=True):
        np.testing.assert_array_equal(rle_to_mask(inst["rle"]), mask)

    polygons = client.get(f"/images/sub/dir/img1/masks?format=polygons&job={job_id}", headers=ANNOTATOR).json()
    assert (polygons["image_id"], polygons["height"], polygons["width"]) == ("sub/dir/img1", H, W)
    for inst, mask in zip(polygons["objects"], MASKS, strict=True):
        np.testing.assert_array_equal(polygons_to_mask(inst["polygons"], H, W), mask)
        assert inst["score"] is not None and inst["bbox"] is not None
        assert (inst["category_id"], inst["category_name"]) == (7, "cat")

    r = client.get("/images/sub/dir/img1/masks?format=png", headers=ANNOTATOR)
    assert r.headers["content-type"] == "image/png"
    classes = _png(r.content)  # the class map: original category ids, as the png export writes
    assert classes.shape == (H, W) and classes.dtype == np.uint8
    np.testing.assert_array_equal(classes == 7, (MASKS[0] | MASKS[1]).astype(bool))
    ids = _png(client.get("/images/sub/dir/img1/masks?format=png&map=instances", headers=ANNOTATOR).content)
    for i, mask in enumerate(MASKS):
        np.testing.assert_array_equal(ids == i + 1, mask.astype(bool))


def test_default_job_is_the_latest_succeeded_one(client: TestClient, stores: Stores) -> None:
    old, new, running, failed = (claimed_job(stores) for _ in range(4))
    for job_id, n in ((old, 1), (new, 2), (running, 3), (failed, 4)):
        stores.predictions.write_image(job_id, "img", rows_for([box_mask(0, 5, 0, 5 + i) for i in range(n)]))
    finish(stores, old)
    finish(stores, new)
    finish(stores, failed, "failed")
    body = client.get("/images/img/masks", headers=ANNOTATOR).json()
    assert body["job_id"] == new and len(body["instances"]) == 2
    for job_id, n in ((old, 1), (running, 3), (failed, 4)):
        assert len(client.get(f"/images/img/masks?job={job_id}", headers=ANNOTATOR).json()["instances"]) == n


def test_empty_and_unknown_images(client: TestClient, stores: Stores) -> None:
    job_id = claimed_job(stores)
    stores.predictions.write_image(job_id, "empty", [], height=H, width=W)
    finish(stores, job_id)
    body = client.get("/images/empty/masks", headers=ANNOTATOR).json()
    assert body["instances"] == [] and body["job_id"] == job_id and (body["height"], body["width"]) == (H, W)
    blank = _png(client.get("/images/empty/masks?format=png", headers=ANNOTATOR).content)
    assert blank.shape == (H, W) and not blank.any()
    r = client.get("/images/nope/masks", headers=ANNOTATOR)
    assert r.status_code == 404 and r.json()["error"] == "no predictions stored for image 'nope' by any succeeded job"
    r = client.get("/images/empty/masks?job=other", headers=ANNOTATOR)
    assert r.status_code == 404 and "by job other" in r.json()["error"]
    r = client.get("/images/empty/masks?format=jpeg", headers=ANNOTATOR)
    assert r.status_code == 422 and "query.format" in r.json()["error"]
    assert client.get("/images/empty/masks").status_code == 401


def test_png_of_semantic_and_binary_jobs_is_a_label_map(sqlite_client: TestClient, sqlite_stores: Stores) -> None:
    """The same pixel values for every task: the original category ids."""
    stores = sqlite_stores
    for task, expect in (("semantic", (3, 5)), ("binary", (3, 5))):
        train = claimed_job(stores, kind="train", config=f"task: {task}\nmodel: {{name: unet}}\n")
        predict = claimed_job(stores, config=f"model: job:{train}\nimages: /data/images\n")
        rows = rows_for(MASKS[:1], category_id=3) + rows_for(MASKS[1:], category_id=5)
        for i, row in enumerate(rows):
            row["instance"] = i
        stores.predictions.write_image(predict, f"{task}-img", rows)
        finish(stores, predict)
        labels = _png(sqlite_client.get(f"/images/{task}-img/masks?format=png", headers=ANNOTATOR).content)
        for mask, value in zip(MASKS, expect, strict=True):
            assert (labels[mask.astype(bool)] == value).all()
        assert (labels[~(MASKS[0] | MASKS[1]).astype(bool)] == 0).all()


def test_png_task_from_a_model_version(sqlite_client: TestClient, sqlite_stores: Stores) -> None:
    stores = sqlite_stores
    stores.versions.register("roads", "binary", "task: binary\n")
    predict = claimed_job(stores, config="model: roads@latest\nimages: /data/images\n")
    stores.predictions.write_image(predict, "road", rows_for(MASKS[:1]))
    finish(stores, predict)
    labels = _png(sqlite_client.get("/images/road/masks?format=png", headers=ANNOTATOR).content)
    assert set(np.unique(labels)) == {0, 7}
