"""``GET /jobs/{id}/export?format=…``: a predict job's stored predictions through the export registry,
one file as it is or a zip; every image listed (also the empty one); bad formats answered with 422 naming
the known ones or the tasks a format fits. The model is a run folder holding what exports read (its
``config.yaml`` naming the task, ``categories.json``) beside a checkpoint the API never loads; the images
are real files, so exports carry their file names."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import yaml
from fastapi.testclient import TestClient
from PIL import Image

from segpipe.data.categories import CategoryMap
from segpipe.masks.encode import rle_to_mask
from segpipe.stores import Stores
from tests.api.conftest import ANNOTATOR, H, W, box_mask, claimed_job, disc_mask, finish, rows_for

MASKS = [box_mask(4, 20, 5, 30), disc_mask(32, 45, 9)]


def _model(tmp_path: Path, task: str) -> Path:
    """A run folder as training leaves it: what exports read, and a checkpoint anything loading would choke on."""
    run = tmp_path / "runs" / task
    run.mkdir(parents=True, exist_ok=True)
    offset = 0 if task == "classification" else 1
    CategoryMap((7, 9), ("cat", "dog"), offset=offset).save(run / "categories.json")
    (run / "config.yaml").write_text(yaml.safe_dump({"task": task}))
    (run / "best.pt").write_bytes(b"not a checkpoint: the API reads the small files beside it")
    return run / "best.pt"


def _job(stores: Stores, tmp_path: Path, task: str = "instance") -> str:
    images = tmp_path / "data" / "batch"
    (images / "sub").mkdir(parents=True, exist_ok=True)
    for name in ("sub/a.png", "b.jpg"):
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(images / name)
    job_id = claimed_job(stores, config=f"model: {_model(tmp_path, task)}\nimages: {images}\n")
    stores.predictions.write_image(job_id, "sub/a", rows_for(MASKS, scores=[0.9, 0.6]))
    stores.predictions.write_image(job_id, "b", [], height=H, width=W)  # nothing found
    finish(stores, job_id)
    return job_id


def _zip(content: bytes) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(content))


def test_coco_export_is_a_cvat_coco_dataset(sqlite_client: TestClient, sqlite_stores: Stores, tmp_path: Path) -> None:
    job_id = _job(sqlite_stores, tmp_path)
    r = sqlite_client.get(f"/jobs/{job_id}/export", params={"format": "coco"}, headers=ANNOTATOR)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text
    archive = _zip(r.content)
    assert "images/" in archive.namelist()
    dataset = json.loads(archive.read("annotations/instances_default.json"))
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in dataset["images"]] == [
        (1, "b.jpg", W, H), (2, "sub/a.png", W, H)]  # fmt: skip
    assert dataset["categories"] == [{"id": 7, "name": "cat", "supercategory": ""},
                                     {"id": 9, "name": "dog", "supercategory": ""}]
    anns = dataset["annotations"]
    assert [(a["id"], a["image_id"], a["category_id"], a["iscrowd"], a["score"]) for a in anns] == [
        (1, 2, 7, 0, 0.9), (2, 2, 7, 0, 0.6)]  # fmt: skip
    for ann, mask in zip(anns, MASKS, strict=True):
        np.testing.assert_array_equal(rle_to_mask(ann["segmentation"]), mask)
        assert ann["area"] == mask.sum()


def test_single_file_formats_come_as_they_are(sqlite_client: TestClient, sqlite_stores: Stores, tmp_path: Path) -> None:
    job_id = _job(sqlite_stores, tmp_path)
    cvat = sqlite_client.get(f"/jobs/{job_id}/export", params={"format": "cvat-mask"}, headers=ANNOTATOR)
    assert cvat.status_code == 200 and cvat.headers["x-segpipe-job-state"] == "succeeded"
    names = set(_zip(cvat.content).namelist())
    assert {"labelmap.txt", "ImageSets/Segmentation/default.txt", "SegmentationClass/sub/a.png",
            "SegmentationObject/b.png"} <= names
    results = sqlite_client.get(f"/jobs/{job_id}/export", params={"format": "coco-results"}, headers=ANNOTATOR)
    assert [(x["image_id"], x["category_id"]) for x in results.json()] == [("sub/a", 7), ("sub/a", 7)]


def test_label_studio_and_several_formats_in_one_zip(
    sqlite_client: TestClient, sqlite_stores: Stores, tmp_path: Path
) -> None:
    job_id = _job(sqlite_stores, tmp_path)
    params = {"format": "label-studio,png,polygons", "image_url_prefix": "s3://bucket/batch/", "score_threshold": "0.7"}
    r = sqlite_client.get(f"/jobs/{job_id}/export", params=params, headers=ANNOTATOR)
    assert r.status_code == 200, r.text
    archive = _zip(r.content)
    tasks = json.loads(archive.read("tasks.json"))
    assert [t["data"]["image"] for t in tasks] == ["s3://bucket/batch/b.jpg", "s3://bucket/batch/sub/a.png"]
    assert [len(t["predictions"][0]["result"]) for t in tasks] == [0, 1]  # the 0.6 instance is below 0.7
    assert "<BrushLabels" in archive.read("label_config.xml").decode()
    polygons = json.loads(archive.read("polygons/sub/a.json"))
    assert (polygons["file_name"], polygons["height"], polygons["width"]) == ("sub/a.png", H, W)
    assert [o["category_name"] for o in polygons["objects"]] == ["cat"]
    assert json.loads(archive.read("polygons/b.json"))["objects"] == []
    empty = np.asarray(Image.open(io.BytesIO(archive.read("masks/b.png"))))
    assert empty.shape == (H, W) and not empty.any()
    sidecar = json.loads(archive.read("instances/sub/a.json"))
    assert [(i["value"], i["category_id"], i["category_name"]) for i in sidecar["instances"]] == [(1, 7, "cat")]


def test_bad_formats_and_jobs(sqlite_client: TestClient, sqlite_stores: Stores, tmp_path: Path) -> None:
    job_id = _job(sqlite_stores, tmp_path)
    r = sqlite_client.get(f"/jobs/{job_id}/export", params={"format": "voc"}, headers=ANNOTATOR)
    assert r.status_code == 422
    assert r.json()["error"] == ("unknown prediction format 'voc'; known: coco, coco-results, csv, cvat-mask, "
                                 "label-studio, overlay, png, polygons")
    classify = _job(sqlite_stores, tmp_path / "cls", task="classification")
    r = sqlite_client.get(f"/jobs/{classify}/export", params={"format": "png"}, headers=ANNOTATOR)
    assert r.status_code == 422
    assert "prediction format 'png' does not fit a classification job (it fits: semantic, binary, instance)" in r.json()["error"]
    train = claimed_job(sqlite_stores, kind="train", config="task: binary\nmodel: {name: unet}\n")
    r = sqlite_client.get(f"/jobs/{train}/export", params={"format": "coco"}, headers=ANNOTATOR)
    assert r.status_code == 409 and "only predict jobs have exports" in r.json()["error"]
    assert sqlite_client.get(f"/jobs/{job_id}/export", params={"format": "coco"}).status_code == 401


def _cat_and_dog_job(stores: Stores, tmp_path: Path) -> str:
    """Image sub/a: a cat (7, 0.9) and a dog (9, 0.6); image b: nothing."""
    images = tmp_path / "data" / "batch"
    (images / "sub").mkdir(parents=True, exist_ok=True)
    for name in ("sub/a.png", "b.jpg"):
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(images / name)
    job_id = claimed_job(stores, config=f"model: {_model(tmp_path, 'instance')}\nimages: {images}\n")
    dog = [dict(r, category_id=9, category_name="dog") for r in rows_for([MASKS[1]], scores=[0.6])]
    stores.predictions.write_image(job_id, "sub/a", rows_for([MASKS[0]], scores=[0.9]) + dog)
    stores.predictions.write_image(job_id, "b", [], height=H, width=W)
    finish(stores, job_id)
    return job_id


def test_category_filter_in_every_format(sqlite_client: TestClient, sqlite_stores: Stores, tmp_path: Path) -> None:
    job_id = _cat_and_dog_job(sqlite_stores, tmp_path)
    url = f"/jobs/{job_id}/export"
    everything = sqlite_client.get(url, params={"format": "coco-results", "score_threshold": 0}, headers=ANNOTATOR)
    assert sorted(x["category_id"] for x in everything.json()) == [7, 9]
    dogs = sqlite_client.get(url, params={"format": "coco-results", "score_threshold": 0, "categories": "9"},
                             headers=ANNOTATOR)
    assert dogs.status_code == 200, dogs.text
    assert [(x["image_id"], x["category_id"]) for x in dogs.json()] == [("sub/a", 9)]
    r = sqlite_client.get(url, params={"format": "coco,label-studio,polygons,cvat-mask", "score_threshold": 0,
                                       "categories": "9"}, headers=ANNOTATOR)
    assert r.status_code == 200, r.text
    archive = _zip(r.content)
    coco = json.loads(archive.read("annotations/instances_default.json"))
    assert [a["category_id"] for a in coco["annotations"]] == [9]
    np.testing.assert_array_equal(rle_to_mask(coco["annotations"][0]["segmentation"]), MASKS[1])
    tasks = json.loads(archive.read("tasks.json"))
    assert [r["value"]["brushlabels"] for t in tasks for r in t["predictions"][0]["result"]] == [["dog"]]
    assert [o["category_name"] for o in json.loads(archive.read("polygons/sub/a.json"))["objects"]] == ["dog"]
    # the score threshold still applies on top: the 0.6 dog is below 0.7, nothing is left
    r = sqlite_client.get(url, params={"format": "coco-results", "score_threshold": 0.7, "categories": "9"},
                          headers=ANNOTATOR)
    assert r.status_code == 200 and r.json() == []
    # an empty list: every image, no instance
    r = sqlite_client.get(url, params={"format": "coco", "score_threshold": 0, "categories": ""}, headers=ANNOTATOR)
    coco = json.loads(_zip(r.content).read("annotations/instances_default.json"))
    assert len(coco["images"]) == 2 and coco["annotations"] == []


def test_unknown_or_malformed_categories_are_422(sqlite_client: TestClient, sqlite_stores: Stores, tmp_path: Path) -> None:
    job_id = _cat_and_dog_job(sqlite_stores, tmp_path)
    r = sqlite_client.get(f"/jobs/{job_id}/export", params={"format": "coco", "categories": "9,8,1"}, headers=ANNOTATOR)
    assert r.status_code == 422
    assert r.json()["error"] == f"job {job_id}: unknown category id(s) 1, 8; the categories are: 7 (cat), 9 (dog)"
    r = sqlite_client.get(f"/jobs/{job_id}/export", params={"format": "coco", "categories": "dog"}, headers=ANNOTATOR)
    assert r.status_code == 422 and "categories" in r.text, r.text


def test_a_model_without_its_small_files_is_refused_not_loaded(sqlite_client: TestClient, sqlite_stores: Stores,
                                                                tmp_path: Path) -> None:
    """A checkpoint with no categories.json beside it (a run from before segpipe wrote one): the API does not
    load it to find the classes, it says how to export the job instead."""
    job_id = _job(sqlite_stores, tmp_path)
    (tmp_path / "runs" / "instance" / "categories.json").unlink()
    r = sqlite_client.get(f"/jobs/{job_id}/export", params={"format": "coco"}, headers=ANNOTATOR)
    assert r.status_code == 422, r.text
    assert "cannot be read without loading it" in r.json()["error"] and "segpipe masks" in r.json()["error"]
