import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from segpipe.data.categories import CategoryMap
from segpipe.data.coco import CocoSource, load_coco
from segpipe.data.synthetic import make_shapes_coco
from segpipe.errors import ConfigError, DataError

TASKS = ("instance", "detection", "semantic", "binary", "classification")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes_coco(tmp_path_factory.mktemp("shapes"), n_images=6, size=(48, 64), seed=3)


def _raw(shapes) -> dict:
    return json.loads(shapes.annotations.read_text())


def _write(tmp_path: Path, images: dict[int, np.ndarray], annotations: list[dict], categories=None) -> Path:
    """A tiny COCO dataset: images as PNG (RGB arrays) plus the JSON; returns the JSON path."""
    (tmp_path / "images").mkdir(exist_ok=True)
    entries = []
    for image_id, rgb in images.items():
        name = f"im{image_id}.png"
        cv2.imwrite(str(tmp_path / "images" / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        entries.append({"id": image_id, "file_name": name, "height": rgb.shape[0], "width": rgb.shape[1]})
    categories = categories or [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": entries, "annotations": annotations, "categories": categories}))
    return path


def _ann(ann_id, image_id, cat, segm=None, bbox=None, crowd=0) -> dict:
    ann = {"id": ann_id, "image_id": image_id, "category_id": cat, "iscrowd": crowd}
    if segm is not None:
        ann["segmentation"] = segm
    if bbox is not None:
        ann["bbox"] = bbox
    return ann


def _square(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


@pytest.mark.parametrize("task", TASKS)
def test_every_task_loads_contract_samples(shapes, task):
    source = CocoSource(shapes.images, shapes.annotations, task)
    assert len(source) == len(source.image_ids) > 0
    for i in range(len(source)):
        sample = source.load(i)
        sample.check()
        assert sample.image_id == source.image_ids[i]
        assert source.image_path(i).name == sample.meta["file_name"]
        if task == "classification":
            assert isinstance(sample.class_id, int) and 0 <= sample.class_id < 3
        elif task in ("semantic", "binary"):
            assert sample.label_map is not None and sample.label_map.shape == (48, 64)
            allowed = {0, 1, 2, 3, 255} if task == "semantic" else {0, 1, 255}
            assert set(np.unique(sample.label_map).tolist()) <= allowed
        else:
            assert sample.meta["orig_size"] == (48, 64)
            assert len(sample.meta["annotation_ids"]) == len(sample.labels)
            assert set(sample.labels.tolist()) <= {1, 2, 3}
            assert len(sample.masks) == (len(sample.labels) if task == "instance" else 0)


def test_instance_masks_match_pycocotools_and_crowd_is_left_out(shapes):
    source = CocoSource(shapes.images, shapes.annotations, "instance")
    coco = source.coco
    crowd_ids = {a["id"] for a in coco.anns.values() if a["iscrowd"]}
    assert crowd_ids, "the synthetic dataset should contain a crowd region"
    seen = set()
    for i in range(len(source)):
        sample = source.load(i)
        for ann_id, mask, label, box in zip(sample.meta["annotation_ids"], sample.masks, sample.labels, sample.boxes,
                                            strict=True):
            ann = coco.anns[ann_id]
            np.testing.assert_array_equal(mask, coco.annToMask(ann))
            assert source.category_map.to_category(int(label)) == ann["category_id"]
            ys, xs = np.nonzero(mask)
            np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            seen.add(ann_id)
    assert seen == set(coco.anns) - crowd_ids


def test_sparse_category_ids_map_to_contiguous_labels_and_back(shapes, tmp_path):
    cmap = CocoSource(shapes.images, shapes.annotations, "semantic").category_map
    assert cmap.ids == (3, 7, 12) and cmap.offset == 1
    assert [cmap.to_label(c) for c in (3, 7, 12)] == [1, 2, 3]
    cmap.save(tmp_path / "cmap.json")
    again = CategoryMap.load(tmp_path / "cmap.json")
    assert again == cmap and [again.to_category(label) for label in (1, 2, 3)] == [3, 7, 12]
    classes = CocoSource(shapes.images, shapes.annotations, "classification").category_map
    assert classes.offset == 0 and [classes.to_label(c) for c in (3, 7, 12)] == [0, 1, 2]


def test_semantic_map_has_crowd_ignored_and_empty_image_background(shapes):
    source = CocoSource(shapes.images, shapes.annotations, "semantic", ignore_index=250)
    coco = source.coco
    crowd = next(a for a in coco.anns.values() if a["iscrowd"])
    index = source.image_ids.index(crowd["image_id"])
    label_map = source.load(index).label_map
    crowd_mask = coco.annToMask(crowd).astype(bool)
    solid = np.zeros_like(crowd_mask)
    for a in coco.imgToAnns[crowd["image_id"]]:
        if not a["iscrowd"]:
            solid |= coco.annToMask(a).astype(bool)
    assert (label_map[crowd_mask & ~solid] == 250).all() and (crowd_mask & ~solid).any()
    assert not (label_map[~crowd_mask] == 250).any()
    empty = [i for i in coco.imgs if not coco.imgToAnns.get(i)]
    assert empty
    assert (source.load(source.image_ids.index(empty[0])).label_map == 0).all()
    inst = CocoSource(shapes.images, shapes.annotations, "instance").load(source.image_ids.index(empty[0]))
    assert inst.masks.shape == (0, 48, 64) and inst.boxes.shape == (0, 4) and inst.labels.shape == (0,)


def test_semantic_overlap_draws_larger_instance_first(tmp_path):
    rgb = np.zeros((32, 32, 3), np.uint8)
    anns = [_ann(1, 1, 9, _square(10, 10, 14, 14)), _ann(2, 1, 5, _square(2, 2, 30, 30))]
    source = CocoSource(tmp_path / "images", _write(tmp_path, {1: rgb}, anns), "semantic")
    label_map = source.load(0).label_map
    assert label_map[12, 12] == 2  # small dog (id 9 → label 2) stays on top of the big cat
    assert label_map[5, 5] == 1 and label_map[0, 0] == 0


def test_categories_by_name_and_id_and_unknown_lists_names(shapes):
    source = CocoSource(shapes.images, shapes.annotations, "instance", categories=[12, "square"])
    assert source.category_map.ids == (7, 12) and source.category_map.names == ("square", "triangle")
    for i in range(len(source)):
        sample = source.load(i)
        assert set(sample.labels.tolist()) <= {1, 2}
        assert all(source.coco.anns[a]["category_id"] in (7, 12) for a in sample.meta["annotation_ids"])
    with pytest.raises(ConfigError, match=r"unknown category 'hexagon'; known: circle \(3\), square \(7\)"):
        CocoSource(shapes.images, shapes.annotations, "instance", categories=["hexagon"])
    with pytest.raises(ConfigError, match="unknown category 4"):
        CocoSource(shapes.images, shapes.annotations, "instance", categories=[4])


def test_binary_merges_chosen_categories(shapes, tmp_path):
    source = CocoSource(shapes.images, shapes.annotations, "binary", categories=["circle", "triangle"])
    cmap = source.category_map
    assert cmap.foreground_ids == (3, 12) and cmap.num_labels == 2
    assert cmap.to_label(3) == cmap.to_label(12) == 1 and 7 not in cmap
    cmap.save(tmp_path / "binary.json")
    assert CategoryMap.load(tmp_path / "binary.json") == cmap
    coco = source.coco
    for i in range(len(source)):
        label_map = source.load(i).label_map
        expected = np.zeros((48, 64), bool)
        for a in coco.imgToAnns.get(source.image_ids[i], []):
            if a["category_id"] in (3, 12) and not a["iscrowd"]:
                expected |= coco.annToMask(a).astype(bool)
        np.testing.assert_array_equal(label_map == 1, expected)
    single = CocoSource(shapes.images, shapes.annotations, "binary", categories=["square"]).category_map
    assert single.ids == (7,) and single.names == ("square",)


def test_classification_crops_are_padded_and_clipped(tmp_path):
    rgb = np.arange(40 * 50 * 3, dtype=np.uint32).reshape(40, 50, 3).astype(np.uint8)
    anns = [
        _ann(10, 1, 9, bbox=[10, 10, 20, 10]),
        _ann(11, 1, 5, bbox=[0, 35, 10, 5]),  # at the bottom-left corner: padding is clipped
        _ann(12, 1, 5, bbox=[0, 0, 50, 40], crowd=1),  # crowd: not a sample
        _ann(13, 1, 9),  # image-level label: not a crop
    ]
    source = CocoSource(tmp_path / "images", _write(tmp_path, {1: rgb}, anns), "classification", crop_padding=0.2)
    assert len(source) == 2 and source.image_ids == [1, 1]
    first, second = source.load(0), source.load(1)
    first.check()
    assert first.meta["annotation_id"] == 10 and first.class_id == 1
    assert first.meta["crop_box"] == (6, 8, 34, 22)
    np.testing.assert_array_equal(first.image, rgb[8:22, 6:34])
    assert second.meta["crop_box"] == (0, 34, 12, 40) and second.class_id == 0


def test_classification_from_image_level_labels(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    anns = [_ann(1, 1, 9), _ann(2, 1, 9), _ann(3, 2, 5), _ann(4, 2, 9, _square(1, 1, 5, 5), bbox=[1, 1, 4, 4])]
    path = _write(tmp_path, {1: rgb, 2: rgb, 3: rgb}, anns)
    source = CocoSource(tmp_path / "images", path, "classification", classification_source="image")
    assert source.image_ids == [1, 2]  # image 3 has no image-level label
    assert [source.load(i).class_id for i in range(2)] == [1, 0]
    anns.append(_ann(5, 2, 9))
    path = _write(tmp_path, {1: rgb, 2: rgb, 3: rgb}, anns)
    with pytest.raises(DataError, match=r"image 2: has image-level labels of several categories: cat \(5\), dog \(9\)"):
        CocoSource(tmp_path / "images", path, "classification", classification_source="image")
    skipped = CocoSource(tmp_path / "images", path, "classification", classification_source="image",
                         exclude_images={2})
    assert skipped.image_ids == [1]


def test_detection_uses_bbox_and_clips(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    anns = [
        _ann(1, 1, 5, bbox=[2, 3, 10, 5]),
        _ann(2, 1, 9, bbox=[25, 15, 10, 10]),  # runs off the image: clipped
        _ann(3, 1, 9, bbox=[40, 5, 3, 3]),  # entirely outside: nothing left
        _ann(4, 1, 5, _square(1, 1, 5, 5)),  # no bbox: taken from the polygon
    ]
    sample = CocoSource(tmp_path / "images", _write(tmp_path, {1: rgb}, anns), "detection").load(0)
    sample.check()
    np.testing.assert_allclose(sample.boxes, [[2, 3, 12, 8], [25, 15, 30, 20], [1, 1, 5, 5]])
    assert sample.labels.tolist() == [1, 2, 1]
    assert sample.meta["annotation_ids"] == [1, 2, 4] and sample.meta["empty_annotation_ids"] == [3]


def test_rle_segmentations_and_excluded_ids(shapes):
    raw = _raw(shapes)
    kinds = {type(a["segmentation"]).__name__ for a in raw["annotations"]}
    assert kinds == {"list", "dict"}
    some = raw["annotations"][0]
    source = CocoSource(shapes.images, shapes.annotations, "instance",
                        exclude_images={raw["images"][-1]["id"]}, exclude_annotations={some["id"]})
    assert raw["images"][-1]["id"] not in source.image_ids
    assert len(source) == len(raw["images"]) - 1
    sample = source.load(source.image_ids.index(some["image_id"]))
    assert some["id"] not in sample.meta["annotation_ids"]


def test_bad_polygon_names_annotation_and_image(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    path = _write(tmp_path, {44: rgb}, [_ann(812, 44, 5, [[1, 1, 5, 5]], bbox=[1, 1, 4, 4])])
    source = CocoSource(tmp_path / "images", path, "semantic")
    with pytest.raises(DataError, match=r"^annotation 812 \(image 44\): polygon 0 has 4 coordinates, needs at least 6"):
        source.load(0)


def test_bbox_only_annotation_is_an_error_for_mask_tasks(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    path = _write(tmp_path, {1: rgb}, [_ann(7, 1, 5, bbox=[1, 1, 4, 4])])
    with pytest.raises(DataError, match=r"annotation 7 \(image 1\): has no segmentation"):
        CocoSource(tmp_path / "images", path, "instance").load(0)
    assert CocoSource(tmp_path / "images", path, "detection").load(0).boxes.shape == (1, 4)


def test_unknown_category_id_in_annotation(tmp_path):
    path = _write(tmp_path, {1: np.zeros((8, 8, 3), np.uint8)}, [_ann(3, 1, 77, _square(1, 1, 4, 4))])
    with pytest.raises(DataError, match=r"annotation 3 \(image 1\): category_id 77 is not a category"):
        CocoSource(tmp_path / "images", path, "semantic").load(0)


def test_image_size_mismatch_names_file_and_image(tmp_path):
    path = _write(tmp_path, {5: np.zeros((16, 24, 3), np.uint8)}, [])
    raw = json.loads(path.read_text())
    raw["images"][0]["height"] = 20
    path.write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"im5\.png \(image 5\): file is 16×24 pixels, the annotations say 20×24"):
        CocoSource(tmp_path / "images", path, "instance").load(0)


def test_missing_image_file_names_image_id(tmp_path):
    path = _write(tmp_path, {5: np.zeros((8, 8, 3), np.uint8)}, [])
    (tmp_path / "images" / "im5.png").unlink()
    with pytest.raises(DataError, match=r"image 5: .*im5\.png: image file not found"):
        CocoSource(tmp_path / "images", path, "semantic").load(0)


def test_grayscale_rgba_16bit_and_exif_rotated_images(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    gray = np.full((10, 12), 77, np.uint8)
    cv2.imwrite(str(images / "gray.png"), gray)
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 2] = 200  # red in BGRA
    rgba[..., 3] = 10
    cv2.imwrite(str(images / "rgba.png"), rgba)
    cv2.imwrite(str(images / "deep.png"), np.full((10, 12), 65535, np.uint16))
    # stored 12 wide × 10 high with EXIF orientation 6 (rotate 90°): displayed 10 wide × 12 high
    stored = np.zeros((10, 12, 3), np.uint8)
    stored[:, :2] = 255  # a white stripe on the left becomes the top after rotating clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(images / "rotated.jpg", exif=exif, quality=95)
    entries = [
        {"id": 1, "file_name": "gray.png", "height": 10, "width": 12},
        {"id": 2, "file_name": "rgba.png", "height": 10, "width": 12},
        {"id": 3, "file_name": "deep.png", "height": 10, "width": 12},
        {"id": 4, "file_name": "rotated.jpg", "height": 12, "width": 10},
    ]
    anns = [_ann(1, 4, 5, _square(0, 0, 10, 3))]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": entries, "annotations": anns, "categories": [{"id": 5, "name": "a"}]}))
    source = CocoSource(images, path, "semantic")
    samples = [source.load(i) for i in range(4)]
    for s in samples:
        s.check()
    assert (samples[0].image == 77).all()
    assert (samples[1].image[..., 0] == 200).all() and (samples[1].image[..., 1:] == 0).all()
    assert (samples[2].image == 255).all()
    rotated = samples[3].image
    assert rotated.shape == (12, 10, 3)
    assert rotated[0].mean() > 200 and rotated[-1].mean() < 50
    raw = json.loads(path.read_text())
    raw["images"][3].update(height=10, width=12)  # the unrotated size: annotations would not line up
    path.write_text(json.dumps(raw))
    with pytest.raises(DataError, match="width and height swapped: an EXIF orientation tag"):
        CocoSource(images, path, "semantic").load(3)


def test_load_coco_is_quiet_and_reports_bad_files(tmp_path, capsys, shapes):
    coco = load_coco(shapes.annotations)
    assert len(coco.imgs) == 6
    assert capsys.readouterr().out == ""
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(DataError, match=r"bad\.json: invalid JSON at line 1"):
        load_coco(bad)
    bad.write_text(json.dumps({"images": [{"id": 1}], "annotations": [], "categories": []}))
    with pytest.raises(DataError, match=r"bad\.json: images\[0\] lacks file_name"):
        load_coco(bad)
    with pytest.raises(DataError, match="cannot read annotations"):
        load_coco(tmp_path / "missing.json")


def test_unknown_task_and_classification_source(shapes):
    with pytest.raises(ConfigError, match="unknown task 'panoptic'"):
        CocoSource(shapes.images, shapes.annotations, "panoptic")
    with pytest.raises(ConfigError, match="classification_source 'boxes'"):
        CocoSource(shapes.images, shapes.annotations, "classification", classification_source="boxes")
