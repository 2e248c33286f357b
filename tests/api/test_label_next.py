"""GET /jobs/{id}/label-next: a predict job's most uncertain images, near-duplicates kept out; the same images
as a Label Studio tasks file and as a CVAT COCO 1.0 subset (datumaro imports it), errors as JSON 4xx, no torch."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from segpipe.data.categories import CategoryMap
from segpipe.masks.encode import rle_to_mask
from segpipe.stores import Stores
from segpipe.stores.predictions import PredictedImage
from tests.api.conftest import (
    ANNOTATOR,
    H,
    W,
    box_mask,
    claimed_job,
    disc_mask,
    finish,
    rows_for,
)
from tests.support.paths import REPO
from tests.tools.venvs import run_tool


def test_most_uncertain_first_without_near_duplicates(client: TestClient, stores: Stores) -> None:
    job = stores.jobs.create("predict", "{}", queue="gpu")
    twin = 0x0F0F_0F0F_0F0F_0F0F
    stores.predictions.write_images(job.id, [
        PredictedImage("sure", [], 8, 8, 0.05, f"{0xFFFF_0000_FFFF_0000:016x}"),
        PredictedImage("unsure", [], 8, 8, 0.9, f"{twin:016x}"),
        PredictedImage("unsure-copy", [], 8, 8, 0.8, f"{twin ^ 0b11:016x}"),  # 2 bits apart: a near-duplicate
        PredictedImage("middle", [], 8, 8, 0.5, f"{0x1234_5678_9ABC_DEF0:016x}"),
        PredictedImage("old", [], 8, 8),  # stored before uncertainty existed: not ranked
    ])
    r = client.get(f"/jobs/{job.id}/label-next?top=3", headers=ANNOTATOR)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(i["rank"], i["image_key"]) for i in body["images"]] == [(1, "unsure"), (2, "middle"), (3, "sure")]
    assert body["near_duplicates"] == [{"image_key": "unsure-copy", "duplicate_of": "unsure"}]
    assert body["scored"] == 4
    plain = client.get(f"/jobs/{job.id}/label-next?top=2&min_distance=0", headers=ANNOTATOR).json()
    assert [i["image_key"] for i in plain["images"]] == ["unsure", "unsure-copy"]
    assert client.get("/jobs/nope/label-next", headers=ANNOTATOR).status_code == 404
    assert client.get(f"/jobs/{job.id}/label-next").status_code == 401
    assert client.get(f"/jobs/{job.id}/label-next?top=0", headers=ANNOTATOR).status_code == 422


# -- the ranking as files to import ------------------------------------------------------------------

# stored uncertainties: "d" most uncertain, then "b", "a"; "c" (nothing found) least
UNCERTAIN = {"a": 0.3, "b": 0.7, "c": 0.1, "d": 0.95}
RANK_ORDER = ["d", "b", "a"]
ROWS = {"a": rows_for([disc_mask(20, 20, 8)], scores=[0.9]),
        "b": rows_for([box_mask(5, 25, 30, 60), disc_mask(30, 15, 10)], scores=[0.8, 0.4]),
        "c": [],
        "d": rows_for([disc_mask(24, 40, 12)], scores=[0.55])}


def ranked_job(stores: Stores, data: Path, model_files: bool = True) -> str:
    """A finished predict job over ``data/batch/{a,b,c,d}.png`` (distinct pixels) with a model folder that
    holds what exports read without torch (categories.json, config.yaml) next to a checkpoint that is no
    checkpoint: anything that loaded it would fail."""
    images = data / "batch"
    images.mkdir(parents=True, exist_ok=True)
    for i, key in enumerate(sorted(UNCERTAIN)):
        pixels = np.full((H, W, 3), 40 * i, np.uint8)
        pixels[:, : 8 * (i + 1)] = 255
        Image.fromarray(pixels).save(images / f"{key}.png")
    model = data / "model"
    if model_files:
        CategoryMap((7, 9), ("cat", "dog")).save(model / "categories.json")
        (model / "config.yaml").write_text("task: instance\n")
    job_id = claimed_job(stores, config=f"model: {model}\nimages: {images}\n")
    stores.predictions.write_images(job_id, [
        PredictedImage(key, ROWS[key], H, W, UNCERTAIN[key], f"{0x1111_1111_1111_1111 * (i + 1):016x}")
        for i, key in enumerate(sorted(UNCERTAIN))])
    finish(stores, job_id)
    return job_id


def test_label_studio_tasks_file_in_rank_order(sqlite_client: TestClient, sqlite_stores: Stores,
                                               predict_inputs: Path) -> None:
    job_id = ranked_job(sqlite_stores, predict_inputs)
    prefix = "/data/local-files/?d=batch/"
    r = sqlite_client.get(f"/jobs/{job_id}/label-next", headers=ANNOTATOR,
                          params={"format": "label-studio", "top": 3, "image_url_prefix": prefix, "score_threshold": 0})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert f'filename="{job_id}-label-next-3.json"' in r.headers["content-disposition"]
    tasks = r.json()
    assert [t["data"]["segpipe_image_id"] for t in tasks] == RANK_ORDER
    assert [t["data"]["segpipe_rank"] for t in tasks] == [1, 2, 3]
    assert [t["data"]["segpipe_uncertainty"] for t in tasks] == [UNCERTAIN[key] for key in RANK_ORDER]
    assert [t["data"]["image"] for t in tasks] == [f"{prefix}{key}.png" for key in RANK_ORDER]
    for task, key in zip(tasks, RANK_ORDER, strict=True):
        (prediction,) = task["predictions"]
        brushes = [region for region in prediction["result"] if region["type"] == "brushlabels"]
        assert [b["value"]["brushlabels"] for b in brushes] == [["cat"]] * len(ROWS[key])


def test_cvat_subset_imports_with_datumaro(sqlite_client: TestClient, sqlite_stores: Stores, predict_inputs: Path,
                                           tmp_path: Path) -> None:
    """The zip holds exactly the top images, in rank order, and datumaro (what CVAT runs to import "COCO 1.0")
    reads every pre-label back pixel for pixel."""
    job_id = ranked_job(sqlite_stores, predict_inputs)
    r = sqlite_client.get(f"/jobs/{job_id}/label-next", headers=ANNOTATOR,
                          params={"format": "cvat", "top": 3, "score_threshold": 0})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        archive.extractall(tmp_path / "cvat")
    cvat = tmp_path / "cvat"
    assert (cvat / "label_next.txt").read_text().split() == [f"{key}.png" for key in RANK_ORDER]
    dataset = json.loads((cvat / "annotations" / "instances_default.json").read_text())
    assert [i["file_name"] for i in dataset["images"]] == [f"{key}.png" for key in RANK_ORDER]
    for key in RANK_ORDER:  # the image files themselves, byte for byte
        assert (cvat / "images" / f"{key}.png").read_bytes() == (predict_inputs / "batch" / f"{key}.png").read_bytes()
    assert sorted(p.name for p in (cvat / "images").iterdir()) == sorted(f"{key}.png" for key in RANK_ORDER)

    found = run_tool("datumaro", "datumaro_read.py", "coco_instances", cvat)
    assert found["labels"] == ["cat", "dog"]
    items = {item["id"]: item for item in found["items"]}
    assert sorted(items) == sorted(RANK_ORDER)
    for key in RANK_ORDER:
        assert items[key]["size"] == [H, W]
        masks = sorted((a for a in items[key]["annotations"] if a["type"] == "mask"), key=lambda a: a["id"])
        assert [m["label"] for m in masks] == ["cat"] * len(ROWS[key])
        for ann, row in zip(masks, ROWS[key], strict=True):
            np.testing.assert_array_equal(rle_to_mask(ann["rle"]), rle_to_mask(row["rle"]))


def test_label_next_errors_name_the_problem(sqlite_client: TestClient, sqlite_stores: Stores,
                                            predict_inputs: Path) -> None:
    job_id = ranked_job(sqlite_stores, predict_inputs)

    def error(params: dict[str, object], job: str = job_id) -> tuple[int, str]:
        r = sqlite_client.get(f"/jobs/{job}/label-next", params=params, headers=ANNOTATOR)
        assert r.headers["content-type"] == "application/json"
        return r.status_code, r.json()["error"]

    status, message = error({"format": "yolo"})
    assert status == 422 and "format" in message and "label-studio" in message and "cvat" in message
    for top in (0, 10_001, "many"):
        status, message = error({"format": "cvat", "top": top})
        assert status == 422 and "top" in message, message
    train = claimed_job(sqlite_stores, kind="train", config="task: instance\n")
    status, message = error({"format": "label-studio"}, train)
    assert status == 409 and "train job" in message and "predict" in message
    assert error({"format": "cvat"}, "no-such-job")[0] == 404

    empty = claimed_job(sqlite_stores, config=f"model: {predict_inputs / 'model'}\nimages: {predict_inputs / 'batch'}\n")
    sqlite_stores.predictions.write_image(empty, "a", [], H, W)  # stored before uncertainty existed
    status, message = error({"format": "label-studio"}, empty)
    assert status == 409 and "uncertainty" in message
    assert sqlite_client.get(f"/jobs/{empty}/label-next", headers=ANNOTATOR).json()["images"] == []

    (predict_inputs / "model" / "categories.json").unlink()  # a model from before categories.json
    status, message = error({"format": "cvat"})
    assert status == 422 and "categories.json" in message and str(predict_inputs / "model") in message
    assert sqlite_client.get(f"/jobs/{job_id}/label-next?format=cvat").status_code == 401


TORCH_FREE = """
import sys
from fastapi.testclient import TestClient
from segpipe.api.app import create_app
from segpipe.settings import Settings
from segpipe.stores import Stores

root = sys.argv[1]
settings = Settings(home=root + "/home", data_roots=[root + "/data"], artifact_root=root + "/artifacts",
                    tokens={"t": "annotator"}, broker_url="sqla+sqlite:///" + root + "/broker.db", auth="on")
stores = Stores.open("sqlite:///" + root + "/segpipe.db", root + "/artifacts")
with TestClient(create_app(settings, stores)) as client:
    for fmt in ("json", "label-studio", "cvat"):
        r = client.get("/jobs/" + sys.argv[2] + "/label-next?top=3&format=" + fmt, headers={"Authorization": "Bearer t"})
        assert r.status_code == 200, r.text
print(sorted(m for m in ("torch", "torchvision") if m in sys.modules))
"""


def test_label_next_files_never_import_torch(tmp_path: Path, predict_inputs: Path) -> None:
    """The API process answers all three formats without importing torch (a fresh interpreter, so nothing
    this test session imported counts)."""
    stores = Stores.open(f"sqlite:///{tmp_path / 'segpipe.db'}", tmp_path / "artifacts")
    try:
        job_id = ranked_job(stores, predict_inputs)
    finally:
        stores.close()
    done = subprocess.run([sys.executable, "-c", TORCH_FREE, str(tmp_path), job_id], check=False, capture_output=True,
                          text=True, timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "torch" not in done.stdout, done.stdout
