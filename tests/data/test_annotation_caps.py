"""Caps on annotations (issue 22, point 5) and class-name lengths in COCO files (point 3): a million
annotations made a worker validate for three minutes and then run out of memory; now validation and
the loader refuse the file before parsing it, naming the count and the setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from segpipe.data.coco import load_coco
from segpipe.data.validate import validate_coco
from segpipe.errors import DataError

REPO = Path(__file__).resolve().parents[2]
MILLION = 1_000_000


@pytest.fixture
def caps(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    from segpipe.settings import get_settings

    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def _dataset(folder: Path, annotations_per_image: list[int], category: str = "cell") -> Path:
    images = folder / "images"
    images.mkdir(parents=True)
    coco: dict = {"images": [], "annotations": [], "categories": [{"id": 1, "name": category}]}
    for image_id, count in enumerate(annotations_per_image, start=1):
        cv2.imwrite(str(images / f"{image_id}.png"), np.zeros((32, 32, 3), np.uint8))
        coco["images"].append({"id": image_id, "file_name": f"{image_id}.png", "width": 32, "height": 32})
        for _ in range(count):
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": 1,
                                        "bbox": [1, 1, 4, 4], "area": 16, "iscrowd": 0,
                                        "segmentation": [[1, 1, 5, 1, 5, 5]]})
    path = folder / "annotations.json"
    path.write_text(json.dumps(coco))
    return path


def test_a_million_annotations_fail_fast_and_small(tmp_path: Path) -> None:
    """In a fresh process: validation and the loader both refuse before parsing (peak RSS stays near the
    file's own size, where parsing a million annotations takes gigabytes)."""
    images = tmp_path / "images"
    images.mkdir()
    row = '{"id": %d, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16, "iscrowd": 0}'
    text = ('{"images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}], '
            '"categories": [{"id": 1, "name": "cell"}], "annotations": ['
            + ", ".join(row % i for i in range(1, MILLION + 1)) + "]}")
    path = tmp_path / "annotations.json"
    path.write_text(text)
    code = (
        "import json, sys\n"
        # VmHWM: this process's own peak RSS (ru_maxrss can carry the forking parent's peak across exec)
        "def peak_kb():\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "from segpipe.data.coco import load_coco\n"
        "from segpipe.data.validate import validate_coco\n"
        "from segpipe.errors import DataError\n"
        "report = validate_coco(sys.argv[1], sys.argv[2], task='detection')\n"
        "try:\n"
        "    load_coco(sys.argv[2]); loaded = None\n"
        "except DataError as e:\n"
        "    loaded = str(e)\n"
        "print(json.dumps({'issues': [[i.code, i.message] for i in report.issues], 'loaded': loaded,\n"
        "                  'peak_kb': peak_kb()}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGPIPE_")}
    done = subprocess.run([sys.executable, "-c", code, str(images), str(path)], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=600, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    message = (f"{MILLION} annotations (counted before parsing); a dataset may hold at most 500000 "
               "(SEGPIPE_MAX_ANNOTATIONS_PER_DATASET): split it, or raise the limit")
    assert result["issues"] == [["too-many-annotations", message]]
    assert result["loaded"] == f"{path}: {message}"
    file_mb = path.stat().st_size / 2**20
    print(f"\nannotations file {file_mb:.0f} MB; peak RSS {result['peak_kb'] / 1024:.0f} MB")
    assert result["peak_kb"] / 1024 < 4 * file_mb + 300, result["peak_kb"]


def test_caps_are_settings_per_dataset_and_per_image(tmp_path: Path, caps: pytest.MonkeyPatch) -> None:
    path = _dataset(tmp_path, [1, 3, 2])
    caps.setenv("SEGPIPE_MAX_ANNOTATIONS_PER_IMAGE", "2")
    report = validate_coco(tmp_path / "images", path, task="instance")
    flagged = [i for i in report.issues if i.code == "image-too-many-annotations"]
    assert [(i.image_id, i.message) for i in flagged] == [
        (2, "image 2: 3 annotations; an image may carry at most 2 (SEGPIPE_MAX_ANNOTATIONS_PER_IMAGE)")]
    caps.setenv("SEGPIPE_MAX_ANNOTATIONS_PER_DATASET", "5")
    from segpipe.settings import get_settings

    get_settings.cache_clear()
    report = validate_coco(tmp_path / "images", path, task="instance")
    assert [i.code for i in report.issues] == ["too-many-annotations"]
    with pytest.raises(DataError, match=r"6 annotations \(counted before parsing\); a dataset may hold at most 5"):
        load_coco(path)


def test_a_category_name_over_the_column_is_a_validation_error(tmp_path: Path) -> None:
    path = _dataset(tmp_path, [1], category="c" * 300)
    report = validate_coco(tmp_path / "images", path, task="instance")
    (issue,) = [i for i in report.issues if i.code == "name-too-long"]
    assert "name 'cccc" in issue.message and "is 300 characters; at most 255 fit (predictions.category_name)" in issue.message
