"""Every export, imported by the annotation tools' OWN code: datumaro (what CVAT runs to import "COCO 1.0"
and "Segmentation mask 1.1") and label-studio-sdk (label-config validation of every prediction, brush
RLE decoding). Each check: every image is there (also those where nothing was found), instance counts,
labels by name, and every decoded mask equal to the stored RLE pixel for pixel.

The tools run in their own venvs (see tests/tools/venvs.py) through small reader scripts.
"""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from segpipe.masks import encode
from segpipe.masks.formats import export
from segpipe.masks.rows import ExportImage
from tests.masks.formats.samples import case
from tests.tools.venvs import run_tool

MASK_TASKS = ["instance", "semantic", "binary"]


def _stem(image: ExportImage) -> str:
    return image.stem


def _decoded(rle: dict) -> np.ndarray:
    return encode.rle_to_mask(rle)


def _by_item(found: dict) -> dict[str, list[dict]]:
    return {item["id"]: item["annotations"] for item in found["items"]}


@pytest.mark.parametrize("task", [*MASK_TASKS, "detection"])
def test_coco_imports_with_datumaro(task: str, tmp_path: Path) -> None:
    images, ctx = case(task)
    export(images, ["coco"], ctx, tmp_path)
    found = run_tool("datumaro", "datumaro_read.py", "coco_instances", tmp_path)
    assert found["labels"] == [name for _, name in ctx.categories]
    items = _by_item(found)
    assert sorted(items) == sorted(_stem(i) for i in images)  # the empty image too
    for image in images:
        anns = items[_stem(image)]
        if task == "detection":
            boxes = sorted((a for a in anns if a["type"] == "bbox"), key=lambda a: a["id"])
            assert [a["label"] for a in boxes] == [r.category_name for r in image.rows]
            assert [a["bbox"] for a in boxes] == [r.bbox for r in image.rows]
            assert [a["score"] for a in boxes] == [r.score for r in image.rows]
            continue
        masks = sorted((a for a in anns if a["type"] == "mask"), key=lambda a: a["id"])
        assert len(masks) == len(image.rows)
        for ann, row in zip(masks, image.rows, strict=True):
            assert ann["label"] == row.category_name
            assert ann["score"] == row.score
            np.testing.assert_array_equal(_decoded(ann["rle"]), _decoded(row.rle))


def test_coco_polygons_import_with_datumaro(tmp_path: Path) -> None:
    """``segmentation="polygons"``: datumaro reads polygons with the right labels; rasterised, they give back
    each mask with its holes filled (polygons hold outer outlines only)."""
    from pycocotools import mask as mask_utils

    from tests.masks.exports import fill_holes

    images, ctx = case("instance", segmentation="polygons")
    export(images, ["coco"], ctx, tmp_path)
    items = _by_item(run_tool("datumaro", "datumaro_read.py", "coco_instances", tmp_path))
    for image in images:
        polygons = [a for a in items[_stem(image)] if a["type"] == "polygon"]
        assert sorted(a["label"] for a in polygons) == sorted(r.category_name for r in image.rows)
        for row in image.rows:
            drawn = [a for a in polygons if a["id"] == image.rows.index(row) + 1 + sum(
                len(i.rows) for i in images[: images.index(image)])]
            rles = mask_utils.frPyObjects([a["points"] for a in drawn], image.height, image.width)
            back = mask_utils.decode(mask_utils.merge(rles))
            np.testing.assert_array_equal(back, fill_holes(_decoded(row.rle)))


@pytest.mark.parametrize("task", MASK_TASKS)
def test_cvat_mask_imports_with_datumaro(task: str, tmp_path: Path) -> None:
    images, ctx = case(task)
    export(images, ["cvat-mask"], ctx, tmp_path / "out")
    with zipfile.ZipFile(tmp_path / "out" / "cvat-mask.zip") as archive:
        archive.extractall(tmp_path / "cvat")
    found = run_tool("datumaro", "datumaro_read.py", "voc_segmentation", tmp_path / "cvat")
    assert found["labels"] == ["background", *(name for _, name in ctx.categories)]
    items = _by_item(found)
    assert sorted(items) == sorted(_stem(i) for i in images)
    for image in images:
        masks = sorted((a for a in items[_stem(image)] if a["type"] == "mask"), key=lambda a: a["group"])
        assert len(masks) == len(image.rows)
        for ann, row in zip(masks, image.rows, strict=True):  # objects are numbered in instance order
            assert ann["label"] == row.category_name
            np.testing.assert_array_equal(_decoded(ann["rle"]), _decoded(row.rle))


def test_cvat_mask_overlap_goes_to_the_higher_score(tmp_path: Path) -> None:
    images, ctx = case("instance")
    image = images[2]
    low, high = image.rows  # dog 0.95 at (10, 10), dog 0.6 at (28, 36): make them overlap
    grown = encode.mask_to_rle(_decoded(low.rle) | _decoded(high.rle))
    covering = type(high)(**{**high.to_dict(), "rle": grown, "score": 0.99})
    export([ExportImage(image.key, image.file_name, image.height, image.width, [low, covering])],
           ["cvat-mask"], ctx, tmp_path / "out")
    with zipfile.ZipFile(tmp_path / "out" / "cvat-mask.zip") as archive:
        archive.extractall(tmp_path / "cvat")
    found = _by_item(run_tool("datumaro", "datumaro_read.py", "voc_segmentation", tmp_path / "cvat"))
    masks = [a for a in found[image.stem] if a["type"] == "mask"]
    assert len(masks) == 1  # the 0.99 instance covers the other one entirely
    np.testing.assert_array_equal(_decoded(masks[0]["rle"]), _decoded(grown))


def _bits(region: dict) -> np.ndarray:
    flat = np.unpackbits(np.frombuffer(base64.b64decode(region["mask_bits"]), np.uint8))
    return flat[: region["height"] * region["width"]].reshape(region["height"], region["width"])


def check_label_studio_read(images: list[ExportImage], read: dict, prefix: str) -> None:
    """What Label Studio's code read back equals the rows: one task per image, regions, labels, masks."""
    assert read["errors"] == []
    tasks = {t["image"]: t for t in read["tasks"]}
    assert sorted(tasks) == sorted(prefix + i.file_name for i in images)
    for image in images:
        regions = tasks[prefix + image.file_name]["regions"]
        brushes = [r for r in regions if r["type"] == "brushlabels"]
        if any(r.rle for r in image.rows):
            assert len(brushes) == len(image.rows)
            for region, row in zip(brushes, image.rows, strict=True):
                assert region["label"] == row.category_name
                assert region["score"] == row.score
                np.testing.assert_array_equal(_bits(region), _decoded(row.rle))
        elif image.rows and image.rows[0].bbox is not None:  # detection
            rects = [r for r in regions if r["type"] == "rectanglelabels"]
            assert [r["label"] for r in rects] == [row.category_name for row in image.rows]
            for region, row in zip(rects, image.rows, strict=True):
                x, y, w, h = row.bbox
                expected = [100 * x / image.width, 100 * y / image.height, 100 * w / image.width, 100 * h / image.height]
                np.testing.assert_allclose(region["rect"], expected)
        elif image.rows:  # classification: the best class
            assert [r["type"] for r in regions] == ["choices"]
        else:
            assert regions == []


@pytest.mark.parametrize("task", [*MASK_TASKS, "detection", "classification"])
def test_label_studio_tasks_validate_and_decode_with_the_sdk(task: str, tmp_path: Path) -> None:
    images, ctx = case(task, image_url_prefix="/data/local-files/?d=batch/")
    export(images, ["label-studio"], ctx, tmp_path)
    read = run_tool("label-studio", "labelstudio_read.py", "check", tmp_path / "label_config.xml", tmp_path / "tasks.json")
    check_label_studio_read(images, read, "/data/local-files/?d=batch/")


def test_label_studio_polygons_validate_with_the_sdk(tmp_path: Path) -> None:
    images, ctx = case("instance", segmentation="both")
    export(images, ["label-studio"], ctx, tmp_path)
    read = run_tool("label-studio", "labelstudio_read.py", "check", tmp_path / "label_config.xml", tmp_path / "tasks.json")
    check_label_studio_read(images, read, ctx.image_url_prefix)
    polygons = [r for t in read["tasks"] for r in t["regions"] if r["type"] == "polygonlabels"]
    assert polygons and all(r["label"] in {"cat", "dog", "traffic light"} and len(r["points"]) >= 3 for r in polygons)


def test_the_sdk_validation_can_fail(tmp_path: Path) -> None:
    """A region whose label the config does not know is reported: the check above is a real one."""
    images, ctx = case("instance")
    export(images, ["label-studio"], ctx, tmp_path)
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    tasks[0]["predictions"][0]["result"][0]["value"]["brushlabels"] = ["zebra"]
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    read = run_tool("label-studio", "labelstudio_read.py", "check", tmp_path / "label_config.xml", tmp_path / "tasks.json")
    assert read["errors"] and read["errors"][0]["task"] == 0
