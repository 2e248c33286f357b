"""``segpipe digits | holdout | shapes``: they write what they say, and bad input is one line, status 2."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from segpipe.cli import app
from segpipe.data.synthetic import make_mask_folders, make_shapes_coco

runner = CliRunner()


def test_digits_writes_both_splits_then_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "digits"
    result = runner.invoke(app, ["digits", str(out), "--scale", "2"])
    assert result.exit_code == 0, result.output
    assert "898 train" in result.output and "899 test" in result.output
    assert len(list((out / "test").rglob("*.png"))) == 899
    assert cv2.imread(str(out / "train" / "0" / "0000.png"), cv2.IMREAD_UNCHANGED).shape == (16, 16)
    again = runner.invoke(app, ["digits", str(out)])
    assert again.exit_code == 2
    assert "already exists" in again.output and "Traceback" not in again.output


def test_holdout_mask_folders(tmp_path: Path) -> None:
    images, masks = make_mask_folders(tmp_path / "src", n_images=5, size=(32, 32), binary=True)
    out = tmp_path / "split"
    result = runner.invoke(app, ["holdout", str(out), "--images", str(images), "--masks", str(masks), "--val", "3-4"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "val" / "masks").iterdir()) == ["s003.png", "s004.png"]
    assert json.loads((out / "split.json").read_text())["val_positions"] == [3, 4]


def test_holdout_coco(tmp_path: Path) -> None:
    coco = make_shapes_coco(tmp_path / "coco", n_images=4, size=(32, 32))
    out = tmp_path / "split"
    args = ["holdout", str(out), "--images", str(coco.images), "--annotations", str(coco.annotations), "--val", "3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(json.loads((out / "val.json").read_text())["images"]) == 1


def test_holdout_needs_exactly_one_layout_and_a_valid_block(tmp_path: Path) -> None:
    images, masks = make_mask_folders(tmp_path / "src", n_images=3, size=(32, 32))
    coco = make_shapes_coco(tmp_path / "coco", n_images=3, size=(32, 32))
    both = runner.invoke(app, ["holdout", str(tmp_path / "o"), "--images", str(images), "--masks", str(masks),
                               "--annotations", str(coco.annotations), "--val", "2"])
    assert both.exit_code == 2 and "exactly one" in both.output
    bad = runner.invoke(app, ["holdout", str(tmp_path / "o"), "--images", str(images), "--masks", str(masks),
                              "--val", "2-5"])
    assert bad.exit_code == 2 and "only 3 images" in bad.output


def test_shapes_writes_every_layout(tmp_path: Path) -> None:
    out = tmp_path / "smoke"
    result = runner.invoke(app, ["shapes", str(out), "--train", "3", "--val", "3"])
    assert result.exit_code == 0, result.output
    for layout in ("coco/train/annotations.json", "semantic/val/masks", "binary/train/images", "classes/val/square"):
        assert (out / layout).exists(), layout
    mask = cv2.imread(str(out / "binary" / "train" / "masks" / "s000.png"), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(mask).tolist()) <= {0, 255}
