"""The export layer's category filter (``ExportContext.only_categories``), for every registered format and
every task kind it fits: exporting with the filter writes exactly the files an export of the same images
with those categories' rows removed beforehand writes, so no format can forget it; plus direct looks at
what a tool would read, and the errors for ids the model does not know."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segpipe.errors import ConfigError
from segpipe.masks.formats import PREDICTION_FORMATS, TASKS, ExportContext, export, kept_rows, parse_category_ids
from segpipe.masks.rows import ExportImage
from tests.masks.formats.samples import CASES, CATEGORIES, case

PAIRS = [(entry.name, task) for entry in PREDICTION_FORMATS for task in TASKS if task in entry.tags and task in CASES]


def _with_pixels(images: list[ExportImage]) -> list[ExportImage]:
    """The overlay format draws over the image itself: give each a grey picture."""
    return [ExportImage(i.key, i.file_name, i.height, i.width, i.rows,
                        lambda i=i: np.full((i.height, i.width, 3), 90, np.uint8)) for i in images]


def _files(folder: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".zip":  # a zip's own bytes carry times: compare its members
            with zipfile.ZipFile(path) as archive:
                found.update({f"{path.name}:{n}": archive.read(n) for n in sorted(archive.namelist())})
        elif path.is_file():
            found[path.relative_to(folder).as_posix()] = path.read_bytes()
    return found


@pytest.mark.parametrize(("fmt", "task"), PAIRS)
def test_filtered_export_equals_export_of_the_kept_rows(fmt: str, task: str, tmp_path: Path) -> None:
    images, ctx = case(task, score_threshold=0.0)
    keep = frozenset() if task == "binary" else frozenset({7, 11})  # binary: its one class off leaves empty images
    prefiltered = [ExportImage(i.key, i.file_name, i.height, i.width,
                               [r for r in i.rows if r.category_id in keep]) for i in images]
    filtered_ctx = ExportContext(task=task, categories=ctx.categories, score_threshold=0.0, only_categories=keep)
    export(_with_pixels(images), [fmt], filtered_ctx, tmp_path / "filtered")
    export(_with_pixels(prefiltered), [fmt], ctx, tmp_path / "by-hand")
    assert _files(tmp_path / "filtered") == _files(tmp_path / "by-hand")
    dropped = sum(len(i.rows) for i in images) - sum(len(i.rows) for i in prefiltered)
    assert dropped > 0, "the case drops something, so the comparison can fail"


@pytest.mark.parametrize(("fmt", "task"), PAIRS)
def test_no_filter_keeps_every_category(fmt: str, task: str, tmp_path: Path) -> None:
    images, ctx = case(task, score_threshold=0.0)
    every = ExportContext(task=task, categories=ctx.categories, score_threshold=0.0,
                          only_categories=frozenset(c for c, _ in ctx.categories))
    export(_with_pixels(images), [fmt], every, tmp_path / "every")
    export(_with_pixels(images), [fmt], ctx, tmp_path / "plain")
    assert _files(tmp_path / "every") == _files(tmp_path / "plain")


def test_what_the_tools_read_has_only_the_kept_class(tmp_path: Path) -> None:
    images, _ = case("instance")
    ctx = ExportContext(task="instance", categories=CATEGORIES, score_threshold=0.0, only_categories=frozenset({7}))
    export(images, ["coco", "coco-results", "label-studio", "png", "cvat-mask"], ctx, tmp_path)
    coco = json.loads((tmp_path / "annotations" / "instances_default.json").read_text())
    assert sorted((a["image_id"], a["category_id"]) for a in coco["annotations"]) == [(12, 7), (40, 7), (40, 7)]
    assert [c["id"] for c in coco["categories"]] == [3, 7, 11], "the label list stays whole: ids match the project"
    results = json.loads((tmp_path / "predictions.json").read_text())
    assert {r["category_id"] for r in results} == {7} and len(results) == 3
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    labels = {label for t in tasks for r in t["predictions"][0]["result"] for label in r["value"].get("brushlabels", [])}
    assert labels == {"dog"}
    classes = np.asarray(Image.open(tmp_path / "masks" / "12.png"))
    assert set(np.unique(classes)) <= {0, 7} and (classes == 7).any()


def test_category_filter_and_score_threshold_together() -> None:
    images, _ = case("instance")
    ctx = ExportContext(task="instance", categories=CATEGORIES, score_threshold=0.7, only_categories=frozenset({7}))
    assert [(r.image_key, r.score) for i in images for r in kept_rows(i, ctx)] == [("12", 0.8), ("40", 0.95)]


def test_classification_keeps_the_ranked_classes_that_are_kept() -> None:
    images, _ = case("classification")
    ctx = ExportContext(task="classification", categories=CATEGORIES, only_categories=frozenset({3}))
    assert [[r.category_id for r in kept_rows(i, ctx)] for i in images] == [[3], []]


def test_unknown_category_ids_name_the_categories() -> None:
    with pytest.raises(ConfigError, match=r"unknown category id\(s\) 4, 99; the categories are: 3 \(cat\), "
                                          r"7 \(dog\), 11 \(traffic light\)"):
        ExportContext(task="instance", categories=CATEGORIES, only_categories=frozenset({4, 7, 99}))


@pytest.mark.parametrize(("text", "ids"), [(None, None), ("", frozenset()), ("3", {3}), (" 3, 7 ,11", {3, 7, 11}),
                                           ("7,7", {7})])
def test_parse_category_ids(text: str | None, ids: set[int] | None) -> None:
    assert parse_category_ids(text) == ids


@pytest.mark.parametrize("text", ["cat", "3,", "3;7", "-1", "1.5"])
def test_parse_category_ids_refuses_what_is_not_an_id_list(text: str) -> None:
    with pytest.raises(ConfigError, match="is not a category id"):
        parse_category_ids(text)
