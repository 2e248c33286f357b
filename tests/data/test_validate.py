"""Dataset validation: every check on small broken copies of generated datasets."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from segpipe.config import from_dict
from segpipe.data.synthetic import make_class_folders, make_mask_folders, make_shapes_coco
from segpipe.data.validate import (
    Issue,
    Report,
    validate_class_folders,
    validate_coco,
    validate_config,
    validate_mask_folders,
    validate_paths,
)
from segpipe.data.validate_geometry import parse_compressed_counts
from segpipe.errors import ConfigError, DataError

# ------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid shapes dataset (4 images of 48×64: one empty, one with a crowd region), made once."""
    root = tmp_path_factory.mktemp("coco")
    make_shapes_coco(root, n_images=4, size=(48, 64), seed=2)  # seed 2 uses all 3 categories
    return root


@pytest.fixture
def coco(pristine: Path, tmp_path: Path) -> Path:
    """A private copy of the pristine dataset that a test may break."""
    return Path(shutil.copytree(pristine, tmp_path / "coco"))


def load(root: Path) -> dict[str, Any]:
    return json.loads((root / "annotations.json").read_text())


def check(root: Path, edit: Callable[[dict[str, Any]], Any] | None = None, **kwargs: Any) -> Report:
    """Validate the dataset with `edit` applied to a copy of its JSON (the original stays intact)."""
    path = root / "annotations.json"
    if edit is not None:
        data = load(root)
        edit(data)
        path = root / "edited.json"
        path.write_text(json.dumps(data))
    return validate_coco(root / "images", path, **kwargs)


def only(report: Report, code: str) -> Issue:
    found = [i for i in report.issues if i.code == code]
    assert len(found) == 1, f"expected one {code!r}, got {[str(i) for i in report.issues]}"
    return found[0]


def polygon_annotation(data: dict[str, Any]) -> dict[str, Any]:
    """The first non-crowd annotation stored as polygons."""
    return next(a for a in data["annotations"] if not a["iscrowd"] and isinstance(a["segmentation"], list))


def rle_annotation(data: dict[str, Any]) -> dict[str, Any]:
    """The first non-crowd annotation stored as compressed RLE."""
    return next(a for a in data["annotations"] if not a["iscrowd"] and isinstance(a["segmentation"], dict))


def first_with_annotations(data: dict[str, Any]) -> dict[str, Any]:
    used = {a["image_id"] for a in data["annotations"]}
    return next(im for im in data["images"] if im["id"] in used)


def assert_annotation_error(report: Report, code: str, ann: dict[str, Any], *words: str) -> Issue:
    issue = only(report, code)
    assert issue.severity == "error"
    assert (issue.annotation_id, issue.image_id) == (ann["id"], ann["image_id"])
    assert f"annotation {ann['id']} (image {ann['image_id']})" in issue.message
    assert issue.file is not None and issue.file.endswith(".json")
    for w in words:
        assert w in issue.message
    return issue


# --------------------------------------------------------------------------------------- valid data


def test_valid_synthetic_dataset_has_no_errors(coco: Path) -> None:
    report = check(coco)
    assert report.ok and report.errors == []
    assert {i.code for i in report.warnings} == {"crowd-annotations", "images-without-annotations"}
    data = load(coco)
    crowd = next(a for a in data["annotations"] if a["iscrowd"])
    assert f"{crowd['id']} (image {crowd['image_id']})" in only(report, "crowd-annotations").message
    assert str(data["images"][0]["id"]) in only(report, "images-without-annotations").message
    assert report.bad_image_ids() == set() and report.bad_annotation_ids() == set()
    assert report.checked == {"images": 4, "annotations": len(data["annotations"]), "categories": 3}


def test_report_to_dict_is_json_ready_with_counts(coco: Path) -> None:
    (coco / "images" / "img_0002.png").unlink()
    d = json.loads(json.dumps(check(coco).to_dict()))
    assert d["ok"] is False and d["errors"] == 1 and d["warnings"] == 2
    assert d["by_code"]["image-missing"] == 1
    assert d["checked"]["images"] == 4
    missing = next(i for i in d["issues"] if i["code"] == "image-missing")
    assert missing["severity"] == "error" and missing["image_id"] == 1002
    assert missing["file"].endswith("img_0002.png")


# -------------------------------------------------------------------------------------- the JSON file


def test_unreadable_json_names_line_and_column(coco: Path) -> None:
    (coco / "annotations.json").write_text('{\n  "images": [,\n')
    issue = only(check(coco), "json-invalid")
    assert issue.severity == "error" and "line 2, column 14" in issue.message
    assert issue.file == str(coco / "annotations.json")


def test_missing_annotations_file(tmp_path: Path) -> None:
    issue = only(validate_coco(tmp_path, tmp_path / "nope.json"), "annotations-unreadable")
    assert issue.severity == "error" and issue.file == str(tmp_path / "nope.json")


def test_top_level_must_be_an_object(coco: Path) -> None:
    (coco / "annotations.json").write_text("[1, 2]")
    assert "the top level is a list" in only(check(coco), "json-not-object").message


def test_top_level_missing_and_wrong_sections(coco: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        del d["categories"]
        d["images"] = {"not": "a list"}

    report = check(coco, edit)
    assert "no 'categories' list" in only(report, "missing-field").message
    assert "'images' is an object, needs a list" in only(report, "wrong-type").message
    assert report.dataset_errors  # neither can be skipped image by image


def test_empty_dataset_and_no_annotations(coco: Path) -> None:
    report = check(coco, lambda d: d.update(images=[], annotations=[]))
    assert only(report, "empty-dataset").severity == "error"
    report = check(coco, lambda d: d.update(annotations=[]))
    assert only(report, "no-annotations").severity == "error"


# --------------------------------------------------------------------------------- image entries


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        (lambda im: im.pop("file_name"), "missing-field", "no 'file_name'"),
        (lambda im: im.pop("width"), "missing-field", "no 'width'"),
        (lambda im: im.update(height="48"), "wrong-type", "'height' is '48', needs an integer"),
        (lambda im: im.update(file_name=""), "wrong-type", "'file_name' is '', needs a non-empty string"),
        (lambda im: im.update(width=0), "bad-value", "'width' is 0, needs a positive number"),
        (lambda im: im.update(file_name="../../etc/passwd"), "unsafe-file-name", "points outside"),
    ],
)
def test_image_entry_fields(coco: Path, change: Callable[[dict[str, Any]], Any], code: str, words: str) -> None:
    report = check(coco, lambda d: change(d["images"][1]))
    issue = only(report, code)
    assert issue.severity == "error" and issue.image_id == 1001 and issue.annotation_id is None
    assert issue.message.startswith("image 1001: ") and words in issue.message
    assert report.bad_image_ids() == {1001}


def test_image_id_missing_or_not_an_integer(coco: Path) -> None:
    report = check(coco, lambda d: d["images"][2].update(id="1002"))
    assert "images[2] has id '1002' (a string), needs an integer" in only(report, "wrong-type").message
    report = check(coco, lambda d: d["images"][2].pop("id"))
    assert "images[2] has no 'id'" in only(report, "missing-field").message


def test_duplicate_image_id(coco: Path) -> None:
    report = check(coco, lambda d: d["images"][3].update(id=1001))
    issue = only(report, "duplicate-id")
    assert issue.image_id == 1001 and "images[1] and again by images[3]" in issue.message
    assert 1001 in report.bad_image_ids()


def test_duplicate_file_name_is_a_warning(coco: Path) -> None:
    report = check(coco, lambda d: d["images"][3].update(file_name="img_0001.png"))
    issue = only(report, "duplicate-file-name")
    assert issue.severity == "warning" and "images 1001, 1003 all use the file img_0001.png" in issue.message


# ----------------------------------------------------------------------------------- image files


def test_image_file_missing(coco: Path) -> None:
    (coco / "images" / "img_0002.png").unlink()
    issue = only(check(coco), "image-missing")
    assert issue.severity == "error" and issue.image_id == 1002
    assert issue.file == str(coco / "images" / "img_0002.png") and "(img_0002.png)" in issue.message


def test_image_file_unreadable(coco: Path) -> None:
    (coco / "images" / "img_0002.png").write_bytes(b"this is not an image")
    issue = only(check(coco), "image-unreadable")
    assert issue.image_id == 1002 and issue.message.startswith("image 1002 (img_0002.png): not a readable image")


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_image_is_found_by_decoding_only(tmp_path: Path, ext: str) -> None:
    ds = make_shapes_coco(tmp_path, n_images=3, size=(48, 64), image_ext=ext)
    path = ds.images / f"img_0001{ext}"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    issue = only(validate_coco(ds.images, ds.annotations), "image-truncated")
    assert issue.severity == "error" and issue.image_id == 1001 and "truncated" in issue.message
    # the fast path reads headers only and cannot see it
    assert validate_coco(ds.images, ds.annotations, decode=False).ok


def test_truncated_image_found_even_if_pillow_is_told_to_pad(coco: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    path = coco / "images" / "img_0001.png"
    path.write_bytes(path.read_bytes()[:-200])
    assert only(check(coco), "image-truncated").image_id == 1001
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_image_size_differs_from_json(coco: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["images"][2]["width"] = 65

    issue = only(check(coco, edit), "image-size-mismatch")
    assert issue.image_id == 1002 and "file is 64×48 (w×h), the JSON says 65×48" in issue.message
    assert issue.file == str(coco / "images" / "img_0002.png")
    assert only(check(coco, edit, decode=False), "image-size-mismatch").image_id == 1002  # headers suffice


def test_image_size_respects_exif_orientation(coco: Path) -> None:
    """A file stored 64×48 with EXIF orientation 6 (rotate 90°) is a 48×64 image for segpipe."""
    path = coco / "images" / "img_0000.png"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(path).convert("RGB").save(path, exif=exif)
    assert check(coco, lambda d: d["images"][0].update(width=48, height=64)).ok
    issue = only(check(coco, lambda d: d["images"][0].update(width=64, height=48)), "image-size-mismatch")
    assert "before its EXIF rotation" in issue.message


# ------------------------------------------------------------------------------------ categories


def test_category_fields_and_duplicates(coco: Path) -> None:
    report = check(coco, lambda d: d["categories"][1].pop("name"))
    assert only(report, "missing-field").message == "category 7: no 'name'"
    report = check(coco, lambda d: d["categories"][1].update(id="7"))
    assert "categories[1] has id '7' (a string), needs an integer" in only(report, "wrong-type").message


def test_duplicate_category_id_and_name(coco: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["categories"].append({"id": 3, "name": "again"})
        d["categories"].append({"id": 40, "name": "circle"})

    report = check(coco, edit)
    dup = only(report, "duplicate-id")
    assert dup.severity == "error" and dup.message == "category 3: id used again by categories[3]"
    assert dup in report.dataset_errors
    name = only(report, "duplicate-category-name")
    assert name.severity == "warning" and "category 40: name 'circle' is also the name of category 3" in name.message


def test_unused_category_is_a_warning(coco: Path) -> None:
    report = check(coco, lambda d: d["categories"].append({"id": 50, "name": "hexagon"}))
    issue = only(report, "unused-category")
    assert issue.severity == "warning" and issue.message == "category 50 (hexagon) has no annotations"
    assert report.ok


# ----------------------------------------------------------------------------------- annotations


@pytest.mark.parametrize(
    ("field", "value", "code", "words"),
    [
        ("category_id", None, "missing-field", "no 'category_id'"),
        ("image_id", "x", "wrong-type", "'image_id' is 'x', needs an integer"),
        ("iscrowd", 2, "bad-value", "iscrowd is 2, needs 0 or 1"),
        ("area", -3, "bad-value", "area is -3, needs a number ≥ 0"),
        ("segmentation", "abc", "bad-segmentation", "segmentation is a string"),
    ],
)
def test_annotation_fields(coco: Path, field: str, value: Any, code: str, words: str) -> None:
    data = load(coco)
    ann = polygon_annotation(data)

    def edit(d: dict[str, Any]) -> None:
        target = next(a for a in d["annotations"] if a["id"] == ann["id"])
        if value is None:
            del target[field]
        else:
            target[field] = value

    report = check(coco, edit)
    issue = only(report, code)
    assert issue.severity == "error" and issue.annotation_id == ann["id"] and words in issue.message
    assert report.bad_annotation_ids() == {ann["id"]} and report.bad_image_ids() == set()


def test_annotation_without_id_drops_its_image(coco: Path) -> None:
    ann = polygon_annotation(load(coco))
    index = load(coco)["annotations"].index(ann)
    report = check(coco, lambda d: d["annotations"][index].pop("id"))
    issue = only(report, "missing-field")
    assert issue.message == f"annotations[{index}] (image {ann['image_id']}) has no 'id'"
    assert report.bad_image_ids() == {ann["image_id"]}


def test_duplicate_annotation_id(coco: Path) -> None:
    data = load(coco)
    first, second = data["annotations"][0], data["annotations"][1]
    report = check(coco, lambda d: d["annotations"][1].update(id=first["id"]))
    issue = only(report, "duplicate-id")
    assert issue.annotation_id == first["id"] and issue.image_id == second["image_id"]
    assert "annotations[0] and again by annotations[1]" in issue.message


def test_annotation_of_unknown_image(coco: Path) -> None:
    ann = polygon_annotation(load(coco))
    report = check(coco, lambda d: next(a for a in d["annotations"] if a["id"] == ann["id"]).update(image_id=77))
    issue = only(report, "unknown-image")
    assert (issue.annotation_id, issue.image_id) == (ann["id"], 77)
    assert issue.message == f"annotation {ann['id']} (image 77): image 77 is not in 'images'"
    assert report.bad_annotation_ids() == {ann["id"]} and report.bad_image_ids() == set()


def test_annotation_of_unknown_category(coco: Path) -> None:
    ann = polygon_annotation(load(coco))
    report = check(coco, lambda d: next(a for a in d["annotations"] if a["id"] == ann["id"]).update(category_id=4))
    assert_annotation_error(report, "unknown-category", ann, "category 4 is not in 'categories' (known: 3, 7, 12)")


def edit_annotation(coco: Path, ann: dict[str, Any], **changes: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        target = next(a for a in d["annotations"] if a["id"] == ann["id"])
        for k, v in changes.items():
            if v is None:
                target.pop(k, None)
            else:
                target[k] = v

    return edit


@pytest.mark.parametrize(
    ("segmentation", "words"),
    [
        ([[1, 2, 3, 4, 5]], "polygon has 5 coordinates, needs an even number ≥ 6"),
        ([[1, 2, 30, 4]], "polygon has 4 coordinates, needs an even number ≥ 6"),
        ([[1, 2, 30, 4, 9, 20], [1, 2, 3, 4, 5, 6, 7]], "polygon 1 has 7 coordinates"),
        ([[1, 2, "x", 4, 9, 20]], "polygon has a coordinate 'x', needs finite numbers"),
        ([1, 2, 30, 4, 9, 20], "segmentation is a flat list of 6 numbers"),
        ([{"a": 1}], "polygon is an object"),
    ],
)
def test_bad_polygons(coco: Path, segmentation: Any, words: str) -> None:
    ann = polygon_annotation(load(coco))
    report = check(coco, edit_annotation(coco, ann, segmentation=segmentation))
    assert_annotation_error(report, "bad-polygon", ann, words)


def test_polygon_outside_image_is_a_warning(coco: Path) -> None:
    ann = polygon_annotation(load(coco))
    report = check(coco, edit_annotation(coco, ann, segmentation=[[10, 10, 90, 10, 10, 30]]))
    issue = only(report, "polygon-outside-image")
    assert issue.severity == "warning" and issue.annotation_id == ann["id"] and "x 10..90" in issue.message


def test_empty_segmentation_is_a_warning_with_a_bbox(coco: Path) -> None:
    ann = polygon_annotation(load(coco))
    report = check(coco, edit_annotation(coco, ann, segmentation=[]))
    issue = only(report, "empty-segmentation")
    assert issue.severity == "warning" and issue.annotation_id == ann["id"] and "only its bbox" in issue.message
    assert report.ok
    report = check(coco, edit_annotation(coco, ann, segmentation=[]), task="detection")
    assert "empty-segmentation" not in {i.code for i in report.issues}


def test_empty_segmentation_is_an_error_without_bbox_or_for_mask_tasks(coco: Path) -> None:
    ann = polygon_annotation(load(coco))
    report = check(coco, edit_annotation(coco, ann, segmentation=[], bbox=None))
    assert_annotation_error(report, "empty-segmentation", ann, "no bbox either")
    report = check(coco, edit_annotation(coco, ann, segmentation=[[5, 5, 10, 10, 15, 15]]), task="instance")
    assert_annotation_error(report, "empty-segmentation", ann, "task instance needs its mask")


def test_rle_without_foreground_is_empty(coco: Path) -> None:
    ann = rle_annotation(load(coco))
    blank = mask_utils.encode(np.zeros((48, 64), np.uint8, order="F"))
    seg = {"size": [48, 64], "counts": blank["counts"].decode()}
    report = check(coco, edit_annotation(coco, ann, segmentation=seg), task="semantic")
    assert_annotation_error(report, "empty-segmentation", ann)


def test_missing_segmentation_depends_on_the_task(coco: Path) -> None:
    ann = polygon_annotation(load(coco))
    edit = edit_annotation(coco, ann, segmentation=None)
    aggregated = only(check(coco, edit), "no-segmentation")
    assert aggregated.severity == "warning" and str(ann["id"]) in aggregated.message
    assert_annotation_error(check(coco, edit, task="binary"), "no-segmentation", ann, "task binary needs masks")
    assert "no-segmentation" not in {i.code for i in check(coco, edit, task="detection").issues}
    report = check(coco, edit_annotation(coco, ann, segmentation=None, bbox=None))
    assert_annotation_error(report, "no-geometry", ann, "neither 'segmentation' nor 'bbox'")


@pytest.mark.parametrize(
    ("bbox", "code", "words"),
    [
        ([1, 2, 0, 5], "bad-bbox", "has width 0 and height 5, both must be > 0"),
        ([1, 2, 5, -1], "bad-bbox", "both must be > 0"),
        ([1, 2, 5], "bad-bbox", "needs 4 numbers"),
        ([1, 2, "5", 4], "bad-bbox", "needs 4 numbers"),
        ([60, 2, 10, 5], "bbox-outside-image", "reaches outside the 64×48 (w×h) image"),
        ([-3, 2, 10, 5], "bbox-outside-image", "reaches outside"),
    ],
)
def test_bad_bboxes(coco: Path, bbox: Any, code: str, words: str) -> None:
    ann = polygon_annotation(load(coco))
    report = check(coco, edit_annotation(coco, ann, bbox=bbox))
    assert_annotation_error(report, code, ann, words)


def test_bbox_within_float_slack_is_fine(coco: Path) -> None:
    ann = polygon_annotation(load(coco))
    assert check(coco, edit_annotation(coco, ann, bbox=[-0.4, 0.0, 64.6, 48.3])).ok


def test_rle_size_differs_from_image(coco: Path) -> None:
    ann = rle_annotation(load(coco))
    seg = dict(ann["segmentation"], size=[64, 48])
    report = check(coco, edit_annotation(coco, ann, segmentation=seg))
    assert_annotation_error(report, "rle-size-mismatch", ann, "RLE size is 48×64 (w×h), the image is 64×48")


@pytest.mark.parametrize(
    ("counts", "words"),
    [
        ("abc~", "character '~' at position 3 is outside the RLE alphabet"),
        ("0P", "ends in the middle of a number"),  # 'P' (32) sets the continuation bit
        ([3072, 1], "RLE counts cover 3073 pixels, its size 64×48 has 3072"),
        ([3070, -2, 4], "RLE counts hold -2, needs run lengths ≥ 0"),
        (12, "RLE counts is an integer"),
    ],
)
def test_malformed_rle_counts(coco: Path, counts: Any, words: str) -> None:
    ann = rle_annotation(load(coco))
    report = check(coco, edit_annotation(coco, ann, segmentation={"size": [48, 64], "counts": counts}))
    assert_annotation_error(report, "bad-rle", ann, words)


def test_compressed_rle_with_negative_run(coco: Path) -> None:
    """Runs 5, 3, 2, then 'L' = delta -4 against the run two back (3): -1. pycocotools would wrap it
    to a 4-billion-pixel run and write past the mask."""
    assert parse_compressed_counts("532L") == "run 3 has negative length -1"
    ann = rle_annotation(load(coco))
    report = check(coco, edit_annotation(coco, ann, segmentation={"size": [48, 64], "counts": "532L"}))
    assert_annotation_error(report, "bad-rle", ann, "run 3 has negative length -1")


def test_parse_compressed_counts_matches_pycocotools() -> None:
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 5), (48, 64), (200, 300)]:
        for density in (0.0, 0.05, 0.5, 1.0):
            mask = (rng.random(shape) < density).astype(np.uint8)
            rle = mask_utils.encode(np.asfortranarray(mask))
            runs = parse_compressed_counts(rle["counts"].decode())
            assert isinstance(runs, list) and sum(runs) == mask.size
            assert sum(runs[1::2]) == int(mask.sum())
            back = mask_utils.frPyObjects({"size": list(shape), "counts": runs}, *shape)
            assert back["counts"] == rle["counts"]


# ------------------------------------------------------------------------------ skipping bad parts


def test_bad_ids_and_raise_for_errors(coco: Path) -> None:
    data = load(coco)
    ann = polygon_annotation(data)
    image = first_with_annotations(data)
    (coco / "images" / image["file_name"]).unlink()
    report = check(coco, edit_annotation(coco, ann, segmentation=[[1, 2, 3]]))
    assert report.bad_image_ids() == {image["id"]}
    assert report.bad_annotation_ids() == {ann["id"]}
    assert report.dataset_errors == []
    report.raise_for_errors(skip_invalid=True)  # everything is skippable
    with pytest.raises(DataError, match=f"2 errors: .*image {image['id']}"):
        report.raise_for_errors()


# ------------------------------------------------------------------------------------- mask folders


@pytest.fixture(scope="module")
def pristine_masks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("masks")
    make_mask_folders(root, n_images=4, size=(32, 40))
    return root


@pytest.fixture
def masks(pristine_masks: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine_masks, tmp_path / "masks"))


CLASSES = ["background", "circle", "square", "triangle"]


def check_masks(root: Path, **kwargs: Any) -> Report:
    kwargs.setdefault("task", "semantic")
    kwargs.setdefault("classes", CLASSES)
    return validate_mask_folders(root / "images", root / "masks", **kwargs)


def test_valid_mask_folders(masks: Path, tmp_path: Path) -> None:
    report = check_masks(masks)
    assert report.ok and report.issues == [] and report.checked == {"images": 4, "masks": 4}
    images, labels = make_mask_folders(tmp_path / "binary", n_images=3, binary=True, foreground_value=255)
    assert validate_mask_folders(images, labels, task="binary", foreground_value=255).issues == []


def test_mask_folder_missing_or_empty(masks: Path, tmp_path: Path) -> None:
    issue = only(validate_mask_folders(tmp_path / "none", masks / "masks", task="binary"), "folder-missing")
    assert issue.file == str(tmp_path / "none") and "images folder" in issue.message
    (tmp_path / "empty").mkdir()
    assert only(validate_mask_folders(tmp_path / "empty", masks / "masks", task="binary"), "empty-dataset")


def test_image_without_mask_and_mask_without_image(masks: Path) -> None:
    (masks / "masks" / "s001.png").rename(masks / "masks" / "stray.png")
    report = check_masks(masks)
    issue = only(report, "mask-missing")
    assert issue.severity == "error" and issue.image_id == "s001"
    assert issue.message.startswith("image s001 (s001.png): no mask s001.png")
    orphan = only(report, "mask-without-image")
    assert orphan.severity == "warning" and "stray.png" in orphan.message
    assert report.bad_image_ids() == {"s001"}


def test_mask_suffix(masks: Path) -> None:
    for p in (masks / "masks").iterdir():
        p.rename(p.with_name(p.stem + "_mask.png"))
    assert check_masks(masks, mask_suffix="_mask.png").issues == []
    assert len([i for i in check_masks(masks).issues if i.code == "mask-missing"]) == 4


def test_mask_unreadable(masks: Path) -> None:
    (masks / "masks" / "s002.png").write_bytes(b"garbage")
    issue = only(check_masks(masks), "mask-unreadable")
    assert issue.image_id == "s002" and issue.file == str(masks / "masks" / "s002.png")
    assert issue.message.startswith("image s002: mask s002.png: cannot decode mask")


def test_mask_size_mismatch(masks: Path) -> None:
    cv2.imwrite(str(masks / "masks" / "s003.png"), np.zeros((32, 41), np.uint8))
    issue = only(check_masks(masks), "mask-size-mismatch")
    assert issue.image_id == "s003" and "mask s003.png is 41×32 (w×h), the image is 40×32" in issue.message
    assert only(check_masks(masks, decode=False), "mask-size-mismatch").image_id == "s003"


def test_semantic_mask_values_outside_the_classes(masks: Path) -> None:
    label = np.zeros((32, 40), np.uint8)
    label[:2, :3] = 4  # one past the last class
    label[5, 5] = 255  # the ignore value is allowed
    cv2.imwrite(str(masks / "masks" / "s000.png"), label)
    issue = only(check_masks(masks), "mask-values")
    assert issue.image_id == "s000" and "values 4 (6 px)" in issue.message
    assert "the classes 0..3 or the ignore value 255" in issue.message
    assert "mask-values" not in {i.code for i in check_masks(masks, decode=False).issues}  # values need decoding
    unknown = check_masks(masks, classes=None)  # without class names the range is unknown
    assert unknown.ok and only(unknown, "classes-unknown").severity == "warning"


def test_semantic_classes_may_omit_background(masks: Path) -> None:
    """classes name the values 1..K; a leading "background" entry (any case) names 0 and is optional."""
    label = np.zeros((32, 40), np.uint8)
    label[0, :4] = 3
    cv2.imwrite(str(masks / "masks" / "s000.png"), label)
    assert check_masks(masks, classes=["circle", "square", "triangle"]).issues == []
    assert check_masks(masks, classes=["Background", "circle", "square", "triangle"]).issues == []
    report = check_masks(masks, classes=["circle", "square"])
    issue = next(i for i in report.issues if i.image_id == "s000")
    assert issue.code == "mask-values" and "values 3 (4 px)" in issue.message and "the classes 0..2" in issue.message


def test_binary_mask_values(tmp_path: Path) -> None:
    images, labels = make_mask_folders(tmp_path, n_images=2, binary=True, foreground_value=1)
    label = cv2.imread(str(labels / "s001.png"), cv2.IMREAD_UNCHANGED)
    label[0, 0] = 7
    cv2.imwrite(str(labels / "s001.png"), label)
    issue = only(validate_mask_folders(images, labels, task="binary", foreground_value=1), "mask-values")
    assert issue.image_id == "s001" and "values 7 (1 px)" in issue.message and "foreground value 1" in issue.message
    assert validate_mask_folders(images, labels, task="binary").ok  # any non-zero is foreground


def test_mask_folder_images_with_one_stem_and_broken_images(masks: Path) -> None:
    shutil.copy(masks / "images" / "s000.png", masks / "images" / "s000.jpg")
    path = masks / "images" / "s001.png"
    path.write_bytes(path.read_bytes()[:-300])
    report = check_masks(masks)
    dup = only(report, "duplicate-stem")
    assert dup.severity == "error" and dup.image_id == "s000" and "s000.jpg, s000.png" in dup.message
    truncated = only(report, "image-truncated")
    assert truncated.image_id == "s001" and truncated.message.startswith("image s001 (s001.png): pixel data")


def test_mask_folders_need_a_mask_task(masks: Path) -> None:
    with pytest.raises(ConfigError, match="semantic and binary, not 'instance'"):
        check_masks(masks, task="instance")


# ------------------------------------------------------------------------------------ class folders


def test_class_folders(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path / "cls", per_class=2)
    assert validate_class_folders(root).issues == []
    (root / "hexagon").mkdir()
    (root / "square" / "deep").mkdir()
    (root / "square" / "deep" / "square_009.png").write_bytes(b"nope")  # sub-folders belong to the class
    shutil.copy(root / "circle" / "circle_000.png", root / "loose.png")
    shutil.copy(root / "circle" / "circle_001.png", root / "circle" / "circle_001.jpg")
    report = validate_class_folders(root)
    assert only(report, "empty-class").severity == "warning" and "'hexagon'" in only(report, "empty-class").message
    bad = only(report, "image-unreadable")
    assert bad.severity == "error" and bad.image_id == "square/deep/square_009"  # the id folders.py gives it
    assert bad.message.startswith("image square/deep/square_009 (square_009.png): not a readable image")
    assert report.bad_image_ids() == {"square/deep/square_009"}
    assert "loose.png" in only(report, "stray-images").message
    assert "circle/circle_001 (circle_001.jpg, circle_001.png)" in only(report, "duplicate-stem").message
    assert report.checked == {"classes": 4, "images": 8}


def test_class_folders_missing_or_without_classes(tmp_path: Path) -> None:
    assert only(validate_class_folders(tmp_path / "none"), "folder-missing").severity == "error"
    assert only(validate_class_folders(tmp_path), "no-classes").severity == "error"
    (tmp_path / "only").mkdir()
    source = make_class_folders(tmp_path.parent / f"{tmp_path.name}_src", per_class=1)
    shutil.copy(source / "circle" / "circle_000.png", tmp_path / "only")
    assert only(validate_class_folders(tmp_path), "one-class").severity == "warning"


# ------------------------------------------------------------------------------- configs and paths


def test_validate_config_checks_train_and_val(coco: Path, masks: Path) -> None:
    config = from_dict({
        "task": "instance",
        "model": {"name": "maskrcnn"},
        "data": {"train": {"images": str(coco / "images"), "annotations": str(coco / "annotations.json")},
                 "val": {"images": str(coco / "images"), "annotations": str(coco / "missing.json")}},
    })
    reports = validate_config(config)
    assert set(reports) == {"train", "val"}
    assert reports["train"].ok and only(reports["val"], "annotations-unreadable")

    cv2.imwrite(str(masks / "masks" / "s000.png"), np.full((32, 40), 9, np.uint8))
    config = from_dict({
        "task": "semantic",
        "model": {"name": "unet"},
        "data": {"train": {"images": str(masks / "images"), "masks": str(masks / "masks")}, "classes": CLASSES},
    })
    reports = validate_config(config)
    assert list(reports) == ["train"] and only(reports["train"], "mask-values").image_id == "s000"


def test_validate_config_without_data(coco: Path) -> None:
    with pytest.raises(ConfigError, match="no 'data' section"):
        validate_config(from_dict({"task": "instance", "model": {"name": "x"}}))


def test_validate_paths_picks_the_layout(coco: Path, masks: Path, tmp_path: Path) -> None:
    assert validate_paths(images=coco / "images", annotations=coco / "annotations.json").source.startswith("COCO")
    assert validate_paths(images=masks / "images", masks=masks / "masks", task="semantic").ok
    assert validate_paths(root=make_class_folders(tmp_path / "c", per_class=1)).ok
    with pytest.raises(ConfigError, match=r"got {annotations, root}"):
        validate_paths(root=tmp_path, annotations=coco / "annotations.json")
    with pytest.raises(ConfigError, match="need a task"):
        validate_paths(images=masks / "images", masks=masks / "masks")
