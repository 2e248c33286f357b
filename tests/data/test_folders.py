from pathlib import Path

import cv2
import numpy as np
import pytest

from segpipe.data.folders import ClassFolderSource, MaskFolderSource, natural_key
from segpipe.data.images import read_mask
from segpipe.data.synthetic import make_class_folders, make_mask_folders
from segpipe.errors import ConfigError, DataError

CLASSES = ["circle", "square", "triangle"]


def _pair(root: Path, name: str, mask: np.ndarray, image_ext: str = ".png") -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "images" / f"{name}{image_ext}"), np.zeros((*mask.shape, 3), np.uint8))
    cv2.imwrite(str(root / "masks" / f"{name}.png"), mask)


def test_natural_order():
    names = ["10.png", "2.png", "img10.png", "img2.png", "1.png", "Img3.png"]
    assert sorted(names, key=natural_key) == ["1.png", "2.png", "10.png", "img2.png", "Img3.png", "img10.png"]


def test_semantic_masks_are_class_indices(tmp_path):
    images, masks = make_mask_folders(tmp_path, n_images=4, size=(32, 40))
    source = MaskFolderSource(images, masks, "semantic", classes=CLASSES)
    cmap = source.category_map
    assert cmap.ids == (1, 2, 3) and cmap.names == tuple(CLASSES) and cmap.num_labels == 4
    assert len(source) == 4 and source.image_ids == ["s000", "s001", "s002", "s003"]
    for i in range(len(source)):
        sample = source.load(i)
        sample.check()
        assert sample.image_id == source.image_ids[i] and sample.image.shape == (32, 40, 3)
        np.testing.assert_array_equal(sample.label_map, read_mask(masks / f"{sample.image_id}.png"))
        assert sample.label_map.max() <= 3 and sample.class_id is None
    assert sample.meta == {"file_name": "s003.png", "mask_file": "s003.png", "orig_size": (32, 40)}
    leading = MaskFolderSource(images, masks, "semantic", classes=["background", *CLASSES])
    assert leading.category_map == cmap


def test_semantic_needs_classes_and_rejects_unknown_values(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[0, 0], mask[1, 1], mask[2, 2] = 2, 255, 7
    _pair(tmp_path, "a", mask)
    with pytest.raises(ConfigError, match=r"need data\.classes"):
        MaskFolderSource(tmp_path / "images", tmp_path / "masks", "semantic")
    source = MaskFolderSource(tmp_path / "images", tmp_path / "masks", "semantic", classes=["x", "y"])
    with pytest.raises(DataError, match=r"a\.png: pixel values \[7\] are not classes \(0\.\.2, 255 = ignore\)"):
        source.load(0)
    ok = MaskFolderSource(tmp_path / "images", tmp_path / "masks", "semantic", classes=list("abcdefg"))
    assert ok.load(0).label_map[1, 1] == 255  # ignore pixels pass through


def test_binary_with_foreground_255(tmp_path):
    images, masks = make_mask_folders(tmp_path, n_images=3, size=(32, 32), binary=True, foreground_value=255)
    source = MaskFolderSource(images, masks, "binary", foreground_value=255)
    assert source.category_map.num_labels == 2 and source.category_map.foreground_ids == (255,)
    for i in range(len(source)):
        sample = source.load(i)
        sample.check()
        raw = read_mask(masks / f"{sample.image_id}.png")
        assert set(np.unique(raw).tolist()) == {0, 255}
        np.testing.assert_array_equal(sample.label_map, (raw == 255).astype(np.uint8))


def test_binary_foreground_value_and_ignore(tmp_path):
    mask = np.array([[0, 1, 2, 255], [2, 2, 0, 255]], np.uint8)
    _pair(tmp_path, "m", mask)
    any_nonzero = MaskFolderSource(tmp_path / "images", tmp_path / "masks", "binary").load(0).label_map
    np.testing.assert_array_equal(any_nonzero, [[0, 1, 1, 255], [1, 1, 0, 255]])
    only_two = MaskFolderSource(tmp_path / "images", tmp_path / "masks", "binary", foreground_value=2)
    np.testing.assert_array_equal(only_two.load(0).label_map, [[0, 0, 1, 255], [1, 1, 0, 255]])


def test_images_in_numeric_order_with_suffix(tmp_path):
    for name in ("10", "2", "1"):
        _pair(tmp_path, name, np.zeros((4, 4), np.uint8), image_ext=".jpg")
    for p in (tmp_path / "masks").iterdir():
        p.rename(p.with_name(p.stem + "_mask.png"))
    source = MaskFolderSource(tmp_path / "images", tmp_path / "masks", "binary", mask_suffix="_mask.png")
    assert source.image_ids == ["1", "2", "10"]
    assert source.image_path(2).name == "10.jpg" and source.mask_path(2).name == "10_mask.png"


def test_missing_mask_names_both_files(tmp_path):
    _pair(tmp_path, "a", np.zeros((4, 4), np.uint8))
    (tmp_path / "masks" / "a.png").unlink()
    with pytest.raises(DataError, match=r"images/a\.png: its mask .*masks/a\.png does not exist"):
        MaskFolderSource(tmp_path / "images", tmp_path / "masks", "binary")


def test_mask_size_mismatch(tmp_path):
    _pair(tmp_path, "a", np.zeros((4, 4), np.uint8))
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), np.zeros((5, 4), np.uint8))
    source = MaskFolderSource(tmp_path / "images", tmp_path / "masks", "binary")
    with pytest.raises(DataError, match=r"a\.png: mask is 5×4, its image a\.png is 4×4"):
        source.load(0)


def test_mask_folder_errors(tmp_path):
    with pytest.raises(ConfigError, match="not 'instance'"):
        MaskFolderSource(tmp_path, tmp_path, "instance")
    with pytest.raises(DataError, match="image folder not found"):
        MaskFolderSource(tmp_path / "nope", tmp_path, "binary")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        MaskFolderSource(tmp_path / "empty", tmp_path, "binary")


def test_class_folders(tmp_path):
    root = make_class_folders(tmp_path / "cls", per_class=2, size=(24, 24))
    (root / "square" / "nested").mkdir()
    cv2.imwrite(str(root / "square" / "nested" / "extra.jpg"), np.zeros((24, 24, 3), np.uint8))
    (root / ".cache").mkdir()
    (root / "notes.txt").write_text("not an image")
    source = ClassFolderSource(root)
    cmap = source.category_map
    assert cmap.names == tuple(CLASSES) and cmap.ids == (0, 1, 2) and cmap.offset == 0
    assert len(source) == 7
    assert source.image_ids[:2] == ["circle/circle_000", "circle/circle_001"]
    assert "square/nested/extra" in source.image_ids
    for i in range(len(source)):
        sample = source.load(i)
        sample.check()
        assert sample.image_id == source.image_ids[i]
        assert cmap.names[sample.class_id] == sample.image_id.split("/")[0]
        assert source.image_path(i).relative_to(root).with_suffix("").as_posix() == sample.image_id


def test_class_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no class folders"):
        ClassFolderSource(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="hold no image files"):
        ClassFolderSource(tmp_path)
