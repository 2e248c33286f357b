"""scikit-learn digits → class-per-folder PNGs: the split, the pixel mapping, and what a source reads back."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.datasets import load_digits

from segpipe.data.digits import digits_split, to_uint8, write_digits
from segpipe.data.folders import ClassFolderSource
from segpipe.errors import ConfigError


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("digits")
    write_digits(out)
    return out


def test_split_is_first_half_train_second_half_test() -> None:
    split = digits_split()
    digits = load_digits()
    train_images, train_targets, train_idx = split["train"]
    test_images, test_targets, test_idx = split["test"]
    np.testing.assert_array_equal(train_idx, np.arange(898))
    np.testing.assert_array_equal(test_idx, np.arange(898, 1797))
    np.testing.assert_array_equal(train_images, digits.images[:898])
    np.testing.assert_array_equal(test_targets, digits.target[898:])
    assert train_images.shape == (898, 8, 8) and test_images.shape == (899, 8, 8)
    assert train_targets.shape == (898,)


def test_grey_levels_stay_distinct_and_round_trip() -> None:
    levels = np.arange(17, dtype=np.float64).reshape(1, 17)
    pixels = to_uint8(levels)
    assert pixels.dtype == np.uint8
    assert pixels[0, 0] == 0 and pixels[0, -1] == 255
    assert len(np.unique(pixels)) == 17
    np.testing.assert_array_equal(np.rint(pixels.astype(np.float64) * 16 / 255), levels)


def test_scale_repeats_pixels() -> None:
    image = np.arange(64, dtype=np.float64).reshape(8, 8) % 17
    big = to_uint8(image, scale=3)
    assert big.shape == (24, 24)
    np.testing.assert_array_equal(big[::3, ::3], to_uint8(image))
    np.testing.assert_array_equal(big[2::3, 1::3], to_uint8(image))


def test_files_hold_the_digits_in_their_class_folders(written: Path) -> None:
    digits = load_digits()
    files = sorted(written.rglob("*.png"))
    assert len(files) == 1797
    assert len(list((written / "train").rglob("*.png"))) == 898
    for index in (0, 1, 897, 898, 1500, 1796):
        split = "train" if index < 898 else "test"
        path = written / split / str(digits.target[index]) / f"{index:04d}.png"
        stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert stored.shape == (8, 8) and stored.dtype == np.uint8
        np.testing.assert_array_equal(np.rint(stored.astype(np.float64) * 16 / 255), digits.images[index])


def test_class_folder_source_reads_ten_classes(written: Path) -> None:
    source = ClassFolderSource(written / "test")
    assert len(source) == 899
    assert list(source.category_map.names) == [str(d) for d in range(10)]
    digits = load_digits()
    sample = source.load(0)
    index = int(Path(source.image_ids[0]).name)
    assert sample.class_id == digits.target[index]
    assert sample.image.shape == (8, 8, 3)


def test_refuses_existing_folders_unless_overwrite(written: Path) -> None:
    with pytest.raises(ConfigError, match="already exists"):
        write_digits(written)
    extra = written / "train" / "3" / "mine.png"
    cv2.imwrite(str(extra), np.zeros((8, 8), np.uint8))
    result = write_digits(written, overwrite=True)
    assert result.counts == {"train": 898, "test": 899}
    assert extra.is_file()  # overwrite replaces segpipe's own files and deletes nothing
    extra.unlink()


def test_bad_scale_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="scale"):
        write_digits(tmp_path, scale=0)
    assert not (tmp_path / "train").exists()
