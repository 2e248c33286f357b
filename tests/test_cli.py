"""The `segpipe` command line: exit statuses, human and JSON output, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from segpipe.cli import app
from segpipe.data.synthetic import make_mask_folders, make_shapes_coco

runner = CliRunner()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("coco")
    make_shapes_coco(root, n_images=4, size=(48, 64), seed=2)
    return root


@pytest.fixture
def coco(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "coco"))


def coco_args(root: Path) -> list[str]:
    return ["validate", "--images", str(root / "images"), "--annotations", str(root / "annotations.json")]


def break_polygon(root: Path) -> dict:
    """Give the first polygon annotation 5 coordinates; return that annotation."""
    path = root / "annotations.json"
    data = json.loads(path.read_text())
    ann = next(a for a in data["annotations"] if isinstance(a["segmentation"], list) and not a["iscrowd"])
    ann["segmentation"] = [[1, 2, 3, 4, 5]]
    path.write_text(json.dumps(data))
    return ann


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"segpipe {version('segpipe')}"


def test_valid_dataset_exits_0_with_summary(coco: Path) -> None:
    result = runner.invoke(app, coco_args(coco))
    assert result.exit_code == 0, result.output
    assert "✓ dataset: COCO" in result.output and "4 images" in result.output
    assert "0 errors, 2 warnings" in result.output
    assert "[crowd-annotations]" in result.output  # narrow layout: one line per issue


def test_errors_exit_1_and_name_the_ids(coco: Path) -> None:
    ann = break_polygon(coco)
    (coco / "images" / "img_0002.png").unlink()
    result = runner.invoke(app, coco_args(coco))
    assert result.exit_code == 1
    out = result.output
    assert f"annotation {ann['id']} (image {ann['image_id']}): polygon has 5 coordinates" in out
    assert "[image-missing] image 1002 (img_0002.png): file not found" in out
    assert "✗ dataset" in out and "2 errors" in out
    assert out.index("[bad-polygon]") < out.index("[crowd-annotations]")  # errors come first


def test_wide_terminal_gets_a_table(coco: Path) -> None:
    ann = break_polygon(coco)
    result = runner.invoke(app, coco_args(coco), env={"COLUMNS": "200"})
    assert result.exit_code == 1
    row = next(line for line in result.output.splitlines() if "bad-polygon" in line)
    cells = [c.strip() for c in row.split("│")]
    assert cells[1:6] == ["error", "bad-polygon", "coco/annotations.json", str(ann["image_id"]), str(ann["id"])]
    assert "severity" in result.output and "message" in result.output


def test_max_issues(coco: Path) -> None:
    result = runner.invoke(app, [*coco_args(coco), "--max-issues", "1"])
    assert result.exit_code == 0
    assert "[crowd-annotations]" in result.output and "[images-without-annotations]" not in result.output
    assert "1 more issues not shown" in result.output


def test_json_output(coco: Path) -> None:
    ann = break_polygon(coco)
    result = runner.invoke(app, [*coco_args(coco), "--json"])
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["ok"] is False and payload["errors"] == 1 and payload["warnings"] == 2
    issue = next(i for i in payload["reports"]["dataset"]["issues"] if i["severity"] == "error")
    assert issue["code"] == "bad-polygon" and issue["annotation_id"] == ann["id"]
    assert issue["image_id"] == ann["image_id"]


def test_fast_skips_decoding(coco: Path) -> None:
    path = coco / "images" / "img_0001.png"
    path.write_bytes(path.read_bytes()[:-300])
    assert runner.invoke(app, coco_args(coco)).exit_code == 1
    assert runner.invoke(app, [*coco_args(coco), "--fast"]).exit_code == 0


def test_mask_folders(tmp_path: Path) -> None:
    images, masks = make_mask_folders(tmp_path, n_images=3)
    cv2.imwrite(str(masks / "s001.png"), np.full((64, 64), 7, np.uint8))
    args = ["validate", "--images", str(images), "--masks", str(masks), "--task", "semantic", "--json"]
    result = runner.invoke(app, [*args, "--classes", "background, circle,square,triangle"])
    assert result.exit_code == 1
    issues = json.loads(result.stdout)["reports"]["dataset"]["issues"]
    assert [(i["code"], i["image_id"]) for i in issues] == [("mask-values", "s001")]
    assert runner.invoke(app, args).exit_code == 0  # no classes: values unchecked


def test_binary_mask_folders_with_foreground_value(tmp_path: Path) -> None:
    images, masks = make_mask_folders(tmp_path, n_images=2, binary=True, foreground_value=1)
    args = ["validate", "--images", str(images), "--masks", str(masks), "--task", "binary"]
    assert runner.invoke(app, [*args, "--foreground-value", "1"]).exit_code == 0
    result = runner.invoke(app, [*args, "--foreground-value", "200", "--ignore-index", "250"])
    assert result.exit_code == 1 and "values 1 (" in result.output


def test_class_folders_root(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "--root", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "[folder-missing]" in result.output


def test_config_validates_train_and_val(coco: Path, tmp_path: Path) -> None:
    config = {
        "task": "instance",
        "model": {"name": "maskrcnn"},
        "data": {"train": {"images": "coco/images", "annotations": "coco/annotations.json"},
                 "val": {"images": "coco/images", "annotations": "coco/val.json"}},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["validate", str(path), "--json"])
    assert result.exit_code == 1
    reports = json.loads(result.stdout)["reports"]
    assert reports["train"]["ok"] is True
    assert reports["val"]["issues"][0]["code"] == "annotations-unreadable"
    human = runner.invoke(app, ["validate", str(path)]).output
    assert "✓ train" in human and "✗ val" in human


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["validate", "--images", "x"], "a dataset is {images, annotations} (COCO)"),
        (["validate", "--images", "x", "--masks", "y"], "image + mask folders need a task"),
        (["validate", "--images", "x", "--masks", "y", "--task", "instance"], "fit tasks semantic and binary"),
        (["validate", "missing.yaml"], "missing.yaml: cannot read config"),
    ],
)
def test_bad_input_is_one_red_line_and_exit_2(args: list[str], words: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and words in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_config_and_paths_together_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "a.yaml"), "--root", str(tmp_path)])
    assert result.exit_code == 2 and "not both" in result.output


def test_installed_command_prints_json(coco: Path) -> None:
    """The console script from pyproject.toml, in a real process."""
    exe = Path(sys.executable).with_name("segpipe")
    assert exe.exists(), "segpipe is not installed in this environment (pip install -e .)"
    ann = break_polygon(coco)
    proc = subprocess.run([str(exe), *coco_args(coco), "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)["reports"]["dataset"]
    assert report["by_code"] == {"bad-polygon": 1, "crowd-annotations": 1, "images-without-annotations": 1}
    assert report["issues"][0]["annotation_id"] == ann["id"]
