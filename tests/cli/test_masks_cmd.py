"""``segpipe masks JOB --format …``: a predict job's stored predictions through the export registry, from the
CLI, with the same files as the API and predict jobs; bad formats exit 2 with one line naming the options."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from segpipe.cli import app
from segpipe.data.categories import CategoryMap
from segpipe.masks.encode import mask_to_rle, rle_to_box, rle_to_mask
from segpipe.settings import get_settings
from segpipe.stores import Stores

runner = CliRunner()


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, np.ndarray]]:
    for key, value in {"SEGPIPE_HOME": str(tmp_path / "home"), "SEGPIPE_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
                       "SEGPIPE_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
                       "SEGPIPE_ARTIFACT_ROOT": str(tmp_path / "artifacts")}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    model = tmp_path / "model.pt"
    torch.save({"model": {}, "task": "semantic", "category_map": CategoryMap((2, 5), ("road", "tree")).to_dict()}, model)
    images = tmp_path / "images"
    images.mkdir()
    for name in ("x.png", "y.png"):
        Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(images / name)
    mask = np.zeros((24, 32), np.uint8)
    mask[3:12, 4:20] = 1
    rle = mask_to_rle(mask)
    stores = Stores.open(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "artifacts")
    created = stores.jobs.create("predict", f"model: {model}\nimages: {images}\n", "gpu")
    stores.predictions.write_image(created.id, "x", [{"category_id": 5, "category_name": "tree", "score": 1.0,
                                                      "bbox": rle_to_box(rle), "rle": rle, "height": 24, "width": 32}])
    stores.predictions.write_image(created.id, "y", [], height=24, width=32)
    stores.close()
    yield created.id, mask
    get_settings.cache_clear()


def test_masks_exports_through_the_registry(job: tuple[str, np.ndarray], tmp_path: Path) -> None:
    job_id, mask = job
    out = tmp_path / "out"
    result = runner.invoke(app, ["masks", job_id, "--out", str(out), "--format", "coco,png,label-studio",
                                 "--image-url-prefix", "/data/local-files/?d=b/", "--with-images"])
    assert result.exit_code == 0, result.output
    dataset = json.loads((out / "annotations" / "instances_default.json").read_text())
    assert [i["file_name"] for i in dataset["images"]] == ["x.png", "y.png"]
    assert sorted(p.name for p in (out / "images").iterdir()) == ["x.png", "y.png"]  # CVAT's COCO 1.0 with images
    assert [(a["category_id"], a["image_id"]) for a in dataset["annotations"]] == [(5, 1)]
    np.testing.assert_array_equal(rle_to_mask(dataset["annotations"][0]["segmentation"]), mask)
    classes = np.asarray(Image.open(out / "masks" / "x.png"))
    np.testing.assert_array_equal(classes, mask * 5)  # the original category id
    assert not np.asarray(Image.open(out / "masks" / "y.png")).any()
    tasks = json.loads((out / "tasks.json").read_text())
    assert [t["data"]["image"] for t in tasks] == ["/data/local-files/?d=b/x.png", "/data/local-files/?d=b/y.png"]


def test_masks_names_the_known_formats(job: tuple[str, np.ndarray], tmp_path: Path) -> None:
    job_id, _ = job
    result = runner.invoke(app, ["masks", job_id, "--out", str(tmp_path / "o"), "--format", "rle"])
    assert result.exit_code == 2
    assert "unknown prediction format 'rle'; known: coco, coco-results, csv, cvat-mask" in result.output
    result = runner.invoke(app, ["masks", job_id, "--out", str(tmp_path / "o"), "--format", "csv,coco"])
    assert result.exit_code == 0, result.output


def test_masks_categories_keeps_only_those(job: tuple[str, np.ndarray], tmp_path: Path) -> None:
    job_id, _mask = job
    kept = runner.invoke(app, ["masks", job_id, "--out", str(tmp_path / "tree"), "--format", "coco,png",
                               "--categories", "5"])
    assert kept.exit_code == 0, kept.output
    dataset = json.loads((tmp_path / "tree" / "annotations" / "instances_default.json").read_text())
    assert [a["category_id"] for a in dataset["annotations"]] == [5]
    dropped = runner.invoke(app, ["masks", job_id, "--out", str(tmp_path / "road"), "--format", "coco,png",
                                  "--categories", "2"])
    assert dropped.exit_code == 0, dropped.output
    assert json.loads((tmp_path / "road" / "annotations" / "instances_default.json").read_text())["annotations"] == []
    assert not np.asarray(Image.open(tmp_path / "road" / "masks" / "x.png")).any(), "the tree region left out"
    unknown = runner.invoke(app, ["masks", job_id, "--out", str(tmp_path / "o"), "--format", "coco",
                                  "--categories", "2,3"])
    assert unknown.exit_code == 2
    assert "unknown category id(s) 3; the categories are: 2 (road), 5 (tree)" in unknown.output
