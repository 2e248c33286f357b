from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from segpipe.data.dataset_hash import HashCache, dataset_hash, file_digest
from segpipe.data.synthetic import make_shapes_coco
from segpipe.errors import DataError


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    make_shapes_coco(tmp_path / "ds", n_images=4, size=(32, 32), seed=3)
    return tmp_path / "ds"


def roots(ds: Path) -> list[Path]:
    return [ds / "images", ds / "annotations.json"]


def test_the_hash_follows_content_not_location_or_time(coco: Path, tmp_path: Path):
    first = dataset_hash(roots(coco), cache=None)
    assert first.startswith("sha256:") and len(first) == 7 + 64
    assert dataset_hash(roots(coco), cache=None) == first
    for path in (coco / "images").iterdir():  # touch: new mtimes, same bytes
        os.utime(path, (1_000_000, 1_000_000))
    assert dataset_hash(roots(coco), cache=None) == first
    copy = tmp_path / "elsewhere"
    shutil.copytree(coco, copy)  # another place, files created in another order
    assert dataset_hash(roots(copy), cache=None) == first
    (coco / "images" / ".DS_Store").write_bytes(b"junk")  # hidden files are not data
    (coco / "images" / ".cache").mkdir()
    (coco / "images" / ".cache" / "x").write_bytes(b"junk")
    assert dataset_hash(roots(coco), cache=None) == first
    assert dataset_hash(list(reversed(roots(coco))), cache=None) != first  # roots count by position


@pytest.mark.parametrize("change", ["annotation", "image", "add", "remove", "rename"])
def test_any_change_of_data_changes_the_hash(coco: Path, change: str):
    before = dataset_hash(roots(coco), cache=None)
    images = sorted((coco / "images").iterdir())
    if change == "annotation":
        text = (coco / "annotations.json").read_text()
        (coco / "annotations.json").write_text(text.replace('"iscrowd": 0', '"iscrowd": 1', 1))
    elif change == "image":
        data = bytearray(images[1].read_bytes())
        data[-20] ^= 0xFF
        images[1].write_bytes(bytes(data))
    elif change == "add":
        shutil.copy(images[0], coco / "images" / "new.png")
    elif change == "remove":
        images[0].unlink()
    else:
        images[0].rename(coco / "images" / "renamed.png")
    assert dataset_hash(roots(coco), cache=None) != before


def test_the_cache_rereads_only_changed_files(coco: Path):
    cache = HashCache()
    first = dataset_hash(roots(coco), cache=cache)
    files = cache.misses
    assert files == 5 and cache.hits == 0  # 4 images + the annotations
    assert dataset_hash(roots(coco), cache=cache) == first and cache.hits == files
    annotations = coco / "annotations.json"
    annotations.write_text(annotations.read_text() + " ")  # size changes: the cache must notice
    assert dataset_hash(roots(coco), cache=cache) != first and cache.misses == files + 1
    assert file_digest(annotations) == cache.digest(annotations)


def test_bad_paths_are_named(tmp_path: Path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'}: dataset path does not exist"):
        dataset_hash([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="dataset folder holds no files"):
        dataset_hash([tmp_path / "empty"])
    with pytest.raises(DataError, match="no files or folders"):
        dataset_hash([])


def test_a_link_cycle_is_walked_once(tmp_path: Path):
    (tmp_path / "ds" / "a").mkdir(parents=True)
    (tmp_path / "ds" / "a" / "x.txt").write_text("x")
    without_the_link = dataset_hash([tmp_path / "ds"], cache=None)
    (tmp_path / "ds" / "a" / "loop").symlink_to(tmp_path / "ds")
    cache = HashCache()
    # the link leads back to a folder already walked: it adds no file (no "a/loop/a/x.txt"), and the one
    # file is read once
    assert dataset_hash([tmp_path / "ds"], cache=cache) == without_the_link
    assert (cache.misses, cache.hits) == (1, 0)
