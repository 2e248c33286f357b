"""Contiguous holdout splits: block parsing, mask-folder copies, COCO file splits, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from segpipe.config import DataConfig, SourceConfig
from segpipe.data.holdout import SPLIT_FILE, holdout_coco, holdout_mask_folders, parse_block
from segpipe.data.sources import build_source
from segpipe.data.synthetic import make_shapes_coco
from segpipe.errors import ConfigError, DataError


def numbered_pairs(root: Path, n: int) -> tuple[Path, Path]:
    """Images 0.png..n-1.png (pixel value = number, so copies are traceable) and 0/255 masks."""
    images, masks = root / "image", root / "label"
    images.mkdir(parents=True)
    masks.mkdir()
    for i in range(n):
        cv2.imwrite(str(images / f"{i}.png"), np.full((32, 32), i, np.uint8))
        mask = np.zeros((32, 32), np.uint8)
        mask[: i + 1] = 255
        cv2.imwrite(str(masks / f"{i}.png"), mask)
    return images, masks


@pytest.mark.parametrize(
    ("spec", "count", "expected"),
    [("25-29", 30, range(25, 30)), ("0-2", 12, range(3)), ("7", 12, range(7, 8)), (" 3 - 4 ", 5, range(3, 5))],
)
def test_parse_block(spec: str, count: int, expected: range) -> None:
    assert parse_block(spec, count) == expected


@pytest.mark.parametrize(
    ("spec", "count", "message"),
    [
        ("25-30", 30, "only 30 images"),
        ("5-3", 30, "comes before"),
        ("0-29", 30, "nothing is left"),
        ("last 5", 30, "expected FIRST-LAST"),
        ("-3", 30, "expected FIRST-LAST"),
    ],
)
def test_parse_block_refuses(spec: str, count: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_block(spec, count)


def test_mask_folders_hold_out_a_block_in_natural_order(tmp_path: Path) -> None:
    images, masks = numbered_pairs(tmp_path / "src", 12)
    split = holdout_mask_folders(images, masks, tmp_path / "out", "9-11")
    # natural order: 10.png and 11.png come after 9.png, not after 1.png
    assert split.val_names == ["9.png", "10.png", "11.png"]
    assert split.train_names == [f"{i}.png" for i in range(9)]
    for name in split.val_names:
        number = int(Path(name).stem)
        assert cv2.imread(str(split.val / "images" / name), cv2.IMREAD_UNCHANGED)[0, 0] == number
        assert (cv2.imread(str(split.val / "masks" / name), cv2.IMREAD_UNCHANGED) == 255).sum() == 32 * (number + 1)
    assert sorted(p.name for p in (split.train / "images").iterdir()) == sorted(split.train_names)
    record = json.loads((tmp_path / "out" / SPLIT_FILE).read_text())
    assert record["val_positions"] == [9, 11] and record["val"] == split.val_names

    data = DataConfig(train=SourceConfig(images=split.train / "images", masks=split.train / "masks"),
                      foreground_value=255)
    source = build_source(SourceConfig(images=split.val / "images", masks=split.val / "masks"), data, "binary")
    assert source.image_ids == ["9", "10", "11"]


def test_missing_mask_names_the_image(tmp_path: Path) -> None:
    images, masks = numbered_pairs(tmp_path / "src", 4)
    (masks / "2.png").unlink()
    with pytest.raises(DataError, match=r"2\.png: its mask .* does not exist"):
        holdout_mask_folders(images, masks, tmp_path / "out", "3")
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite_and_is_replaced(tmp_path: Path) -> None:
    images, masks = numbered_pairs(tmp_path / "src", 6)
    out = tmp_path / "out"
    holdout_mask_folders(images, masks, out, "4-5")
    with pytest.raises(ConfigError, match="already exists"):
        holdout_mask_folders(images, masks, out, "0-1")
    split = holdout_mask_folders(images, masks, out, "0-1", overwrite=True)
    # no file of the earlier split survives in the new split folders
    assert sorted(p.name for p in (split.val / "images").iterdir()) == ["0.png", "1.png"]
    assert sorted(p.name for p in (split.train / "images").iterdir()) == ["2.png", "3.png", "4.png", "5.png"]


def test_overwrite_never_removes_folders_it_did_not_write(tmp_path: Path) -> None:
    images, masks = numbered_pairs(tmp_path / "src", 4)
    precious = tmp_path / "out" / "train"
    precious.mkdir(parents=True)
    (precious / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"no split\.json"):
        holdout_mask_folders(images, masks, tmp_path / "out", "3", overwrite=True)
    assert (precious / "keep.txt").read_text() == "mine"


def test_coco_split_keeps_categories_and_moves_annotations(tmp_path: Path) -> None:
    coco = make_shapes_coco(tmp_path / "coco", n_images=10, size=(32, 48), seed=3)
    original = json.loads(coco.annotations.read_text())
    split = holdout_coco(coco.images, coco.annotations, tmp_path / "out", "7-9")
    train, val = json.loads(split.train.read_text()), json.loads(split.val.read_text())
    assert [im["file_name"] for im in val["images"]] == ["img_0007.png", "img_0008.png", "img_0009.png"]
    assert len(train["images"]) == 7
    assert train["categories"] == val["categories"] == original["categories"]
    val_ids = {im["id"] for im in val["images"]}
    assert all(a["image_id"] in val_ids for a in val["annotations"])
    assert not any(a["image_id"] in val_ids for a in train["annotations"])
    assert len(train["annotations"]) + len(val["annotations"]) == len(original["annotations"])

    data = DataConfig(train=SourceConfig(images=coco.images, annotations=split.train))
    sources = [build_source(SourceConfig(images=coco.images, annotations=path), data, "instance")
               for path in (split.train, split.val)]
    assert sources[0].category_map.ids == sources[1].category_map.ids
    assert len(sources[1]) == 3


def test_coco_annotation_of_unlisted_image_is_named(tmp_path: Path) -> None:
    coco = make_shapes_coco(tmp_path / "coco", n_images=4, size=(32, 48), seed=1)
    data = json.loads(coco.annotations.read_text())
    data["annotations"][0]["image_id"] = 999
    coco.annotations.write_text(json.dumps(data))
    with pytest.raises(DataError, match=f"annotation {data['annotations'][0]['id']} refers to image 999"):
        holdout_coco(coco.images, coco.annotations, tmp_path / "out", "3")


def test_coco_malformed_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [], "annotations": [')
    with pytest.raises(DataError, match=r"bad\.json: not valid JSON"):
        holdout_coco(tmp_path, bad, tmp_path / "out", "0")
    bad.write_text('{"images": [{"file_name": "a.png"}], "annotations": []}')
    with pytest.raises(DataError, match=r"images\[0\] needs 'id'"):
        holdout_coco(tmp_path, bad, tmp_path / "out", "0")
