"""The export registry's contract, for every registered format and every task kind it says it fits:
it writes files, lists every image (also one where nothing was found), and refuses what does not fit."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segpipe.errors import ConfigError, DataError
from segpipe.masks.formats import (
    PREDICTION_FORMATS,
    TASKS,
    check_formats,
    default_formats,
    export,
    job_level_formats,
    per_image_formats,
)
from segpipe.masks.formats.label_studio import brush_rle_to_mask, mask_to_brush_rle
from segpipe.masks.rows import ExportImage
from tests.masks.formats.samples import CASES, case

PAIRS = [(entry.name, task) for entry in PREDICTION_FORMATS for task in TASKS if task in entry.tags and task in CASES]


@pytest.mark.parametrize(("fmt", "task"), PAIRS)
def test_every_format_writes_every_image(fmt: str, task: str, tmp_path: Path) -> None:
    images, ctx = case(task)
    if fmt == "overlay":
        images = _with_pixels(images)
    files = export(images, [fmt], ctx, tmp_path)[fmt]
    assert files and all(p.is_file() for p in files)
    for image in images:  # every image is in the export, whatever it holds
        if PREDICTION_FORMATS.get(fmt).per_image:
            assert any(p.with_suffix("").as_posix().endswith(image.stem) for p in files), image.key
        elif fmt == "coco":
            listed = json.loads((tmp_path / "annotations" / "instances_default.json").read_text())["images"]
            assert image.file_name in [i["file_name"] for i in listed]
        elif fmt == "label-studio":
            tasks = json.loads((tmp_path / "tasks.json").read_text())
            assert ctx.image_url_prefix + image.file_name in [t["data"]["image"] for t in tasks]
        elif fmt == "cvat-mask":
            with zipfile.ZipFile(tmp_path / "cvat-mask.zip") as archive:
                assert image.stem in archive.read("ImageSets/Segmentation/default.txt").decode().split()
        else:  # coco-results, csv: one line per row, nothing to list for an image without rows
            assert fmt in ("coco-results", "csv")


def _with_pixels(images: list[ExportImage]) -> list[ExportImage]:
    return [ExportImage(i.key, i.file_name, i.height, i.width, i.rows,
                        lambda i=i: np.zeros((i.height, i.width, 3), np.uint8)) for i in images]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("fmt", "task"), PAIRS)
def test_a_per_image_format_writes_each_image_alone(fmt: str, task: str, tmp_path: Path) -> None:
    """What a sharded predict job relies on: a per-image format's files for a few images, written by
    separate exports (one per shard) into one folder, are the files of one export of them all, inside
    the folders the format declares, each declared folder written; a job-level format declares none."""
    writer = PREDICTION_FORMATS.get(fmt)
    if not writer.per_image:
        assert writer.folders(task) == () and job_level_formats([fmt]) == [fmt] and not per_image_formats([fmt])
        return
    images, ctx = case(task)
    images = _with_pixels(images)
    export(images, [fmt], ctx, tmp_path / "whole")
    for image in images:
        export([image], [fmt], ctx, tmp_path / "pieces")
    whole = _tree(tmp_path / "whole")
    assert whole and _tree(tmp_path / "pieces") == whole
    folders = writer.folders(task)
    assert {name.split("/")[0] for name in whole} == set(folders) and set(folders) <= set(writer.per_image)
    assert per_image_formats([fmt, "coco-results"]) == [fmt]


def test_empty_images_in_one_layer_formats(tmp_path: Path) -> None:
    images, ctx = case("instance")
    export(images, ["png", "cvat-mask", "polygons", "label-studio", "coco"], ctx, tmp_path)
    assert not np.asarray(Image.open(tmp_path / "masks" / "5.png")).any()
    assert json.loads((tmp_path / "polygons" / "5.json").read_text())["objects"] == []
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert [t["data"]["segpipe_image_id"] for t in tasks] == ["12", "5", "40"]
    assert tasks[1]["predictions"][0]["result"] == []
    coco = json.loads((tmp_path / "annotations" / "instances_default.json").read_text())
    assert [i["id"] for i in coco["images"]] == [12, 5, 40]  # COCO image ids kept


def test_unknown_and_unfit_formats_are_named() -> None:
    known = ", ".join(sorted(PREDICTION_FORMATS.names()))
    with pytest.raises(ConfigError, match=f"unknown prediction format 'rle'; known: {re.escape(known)}$"):
        check_formats(["rle"], "instance")
    with pytest.raises(ConfigError, match="'cvat-mask' does not fit a detection job \\(it fits: semantic, binary, instance\\)"):
        check_formats(["coco", "cvat-mask"], "detection")
    with pytest.raises(ConfigError, match="no prediction format given"):
        check_formats([" "], "instance")
    for task in TASKS:
        assert check_formats(default_formats(task), task)


def test_score_threshold_applies_to_instances_only(tmp_path: Path) -> None:
    images, ctx = case("instance", score_threshold=0.75)
    export(images, ["coco-results"], ctx, tmp_path / "i")
    assert sorted(r["score"] for r in json.loads((tmp_path / "i" / "predictions.json").read_text())) == [0.8, 0.9, 0.95]
    images, ctx = case("classification", score_threshold=0.75)
    export(images, ["csv"], ctx, tmp_path / "c")
    assert len((tmp_path / "c" / "predictions.csv").read_text().splitlines()) == 4  # header + every ranked class


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (300, 300)])
def test_brush_rle_round_trip(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    for mask in (rng.random(shape) > 0.5, np.ones(shape, bool), np.zeros(shape, bool)):
        np.testing.assert_array_equal(brush_rle_to_mask(mask_to_brush_rle(mask), *shape), mask)


def test_file_names_cannot_leave_the_output_folder(tmp_path: Path) -> None:
    images, ctx = case("semantic")
    images[0].file_name = "../../outside.png"
    with pytest.raises(DataError, match="leaves the output folder"):
        export(images, ["polygons"], ctx, tmp_path / "out")
    assert not (tmp_path / "outside.json").exists()
