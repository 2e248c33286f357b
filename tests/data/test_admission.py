"""Image admission (issue 22, point 1): every door refuses an image over the pixel or byte limit from its
header, before a decoder allocates — and says which file and which limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from segpipe.data.admission import ImageLimits, ImageRefused, admit_bytes, admit_file
from segpipe.data.images import read_image, read_mask
from segpipe.data.validate import validate_coco
from segpipe.errors import DataError
from tests.support.hostile_files import png_bomb

BOMB = (20000, 20000)  # 400 megapixels: 1.2 GB as 8-bit RGB, about 48 KB as a 1-bit PNG
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png", *BOMB)


def test_read_image_refuses_a_pixel_bomb_with_little_memory(bomb: Path) -> None:
    """In a fresh process (so its peak RSS is the read's): refused naming the file and the limit, and the
    process never comes near the 1.2 GB a decode needs. Before admission, cv2 decoded it."""
    code = (
        "import json, sys\n"
        # VmHWM: this process's own peak RSS (ru_maxrss can carry the forking parent's peak across exec)
        "def peak_kb():\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "from segpipe.data.images import read_image\n"
        "from segpipe.errors import DataError\n"
        "try:\n"
        "    read_image(sys.argv[1]); message = None\n"
        "except DataError as e:\n"
        "    message = str(e)\n"
        "print(json.dumps({'message': message, 'peak_kb': peak_kb()}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGPIPE_")}
    out = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, cwd=REPO,
                         env=env, timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["message"] is not None, f"the bomb was decoded (peak {result['peak_kb'] / 1024:.0f} MB)"
    assert result["message"].startswith(f"{bomb}: image is 400.0 megapixels")
    assert "40-megapixel limit (SEGPIPE_MAX_IMAGE_MEGAPIXELS)" in result["message"]
    decoded_mb = 3 * BOMB[0] * BOMB[1] / 2**20
    assert result["peak_kb"] / 1024 < decoded_mb / 3, result


def test_limits_are_settings_and_every_reader_applies_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from segpipe.settings import get_settings

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.zeros((100, 100), np.uint8))
    assert read_image(path).shape == (100, 100, 3)
    monkeypatch.setenv("SEGPIPE_MAX_IMAGE_MEGAPIXELS", "0.005")  # 5000 pixels
    get_settings.cache_clear()
    try:
        with pytest.raises(ImageRefused, match=r"100×100 = 0\.0 megapixels, over the 0\.005-megapixel limit") as e:
            read_image(path)
        assert e.value.code == "image-too-large"
        with pytest.raises(DataError, match=r"0\.005-megapixel limit"):
            read_mask(path)
    finally:
        get_settings.cache_clear()


def test_byte_limit_and_unreadable_headers(tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    limits = ImageLimits(max_pixels=10**6, max_bytes=1000)
    with pytest.raises(ImageRefused, match=r"noise.png: image file is 0\.0 MB, over the 0\.000953674 MB limit"
                                           r" \(SEGPIPE_MAX_IMAGE_MB\)") as e:
        admit_file(path, limits)
    assert e.value.code == "image-too-big"
    with pytest.raises(ImageRefused, match="task 3: cannot decode image") as e:
        admit_bytes(b"not an image at all", "task 3", limits)
    assert e.value.code == "image-unreadable"
    admitted = admit_file(path, ImageLimits(10**6, 10**6))
    assert (admitted.format, admitted.width, admitted.height) == ("PNG", 64, 64)


def test_validation_names_the_oversized_image(tmp_path: Path, bomb: Path) -> None:
    """Training validates before it loads: the bomb is an error naming its image, not a decode."""
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "ok.png"), np.zeros((32, 32, 3), np.uint8))
    (images / "big.png").write_bytes(bomb.read_bytes())
    coco = {"images": [{"id": 1, "file_name": "ok.png", "width": 32, "height": 32},
                       {"id": 2, "file_name": "big.png", "width": 20000, "height": 20000}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16,
                             "segmentation": [[1, 1, 5, 1, 5, 5]], "iscrowd": 0} for i in (1, 2)]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    report = validate_coco(images, tmp_path / "ann.json", task="instance")
    refused = [i for i in report.issues if i.code == "image-too-large"]
    assert len(refused) == 1 and refused[0].image_id == 2, report.issues
    assert "image is 400.0 megapixels, over the 40-megapixel limit" in refused[0].message
