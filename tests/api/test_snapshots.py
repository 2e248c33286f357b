"""Snapshots over HTTP: pull an export from a data root, list, read; roles, confinement, bad archives."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from tests.api.conftest import ANNOTATOR, ENGINEER


def _cvat_coco(path: Path) -> Path:
    image = io.BytesIO()
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(image, format="PNG")
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 16, "height": 12}],
            "categories": [{"id": 1, "name": "cell"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "iscrowd": 0,
                             "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]]}]}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("annotations/instances_default.json", json.dumps(coco))
        archive.writestr("images/default/a.png", image.getvalue())
    return path


def test_pull_list_and_read(sqlite_client: TestClient, tmp_path: Path) -> None:
    _cvat_coco(tmp_path / "data" / "task1.zip")
    body = {"format": "cvat-coco", "source": "task1.zip"}
    assert sqlite_client.post("/snapshots", json=body, headers=ANNOTATOR).status_code == 403
    first = sqlite_client.post("/snapshots", json=body, headers=ENGINEER)
    assert first.status_code == 201, first.json()
    snap = first.json()
    assert (snap["images"], snap["annotations"], snap["categories"]) == (1, 1, ["cell"])
    assert snap["path"] == f"snapshots/{snap['id']}" and len(snap["sha256"]) == 64
    again = sqlite_client.post("/snapshots", json=body, headers=ENGINEER)
    assert again.status_code == 200 and again.json()["id"] == snap["id"]  # unchanged content
    assert [s["id"] for s in sqlite_client.get("/snapshots", headers=ANNOTATOR).json()] == [snap["id"]]
    assert sqlite_client.get(f"/snapshots/{snap['id']}", headers=ANNOTATOR).json() == snap
    assert sqlite_client.get("/snapshots/0123456789abcdef", headers=ANNOTATOR).status_code == 404
    assert sqlite_client.get("/snapshots").status_code == 401


def test_archives_outside_the_data_roots_and_bad_input_are_4xx(sqlite_client: TestClient, tmp_path: Path) -> None:
    _cvat_coco(tmp_path / "outside.zip")
    r = sqlite_client.post("/snapshots", json={"format": "cvat-coco", "source": str(tmp_path / "outside.zip")},
                           headers=ENGINEER)
    assert r.status_code == 403
    r = sqlite_client.post("/snapshots", json={"format": "cvat-coco", "source": "missing.zip"}, headers=ENGINEER)
    assert r.status_code == 404
    (tmp_path / "data" / "junk.zip").write_bytes(b"not a zip")
    r = sqlite_client.post("/snapshots", json={"format": "cvat-coco", "source": "junk.zip"}, headers=ENGINEER)
    assert r.status_code == 422 and "junk.zip: not a readable zip archive" in r.json()["error"]
    r = sqlite_client.post("/snapshots", json={"format": "yolo", "source": "junk.zip"}, headers=ENGINEER)
    assert r.status_code == 422 and "cvat-coco, cvat-images, cvat-mask" in r.json()["error"]
