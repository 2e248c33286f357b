import json

import cv2
import numpy as np
import pytest
from PIL import Image

from segpipe.data.categories import CategoryMap
from segpipe.data.images import read_mask
from segpipe.data.synthetic import SHAPE_CATEGORIES, make_shapes_coco, shape_polygon
from segpipe.errors import DataError
from segpipe.evaluation.coco import load_coco_quietly
from segpipe.masks.encode import (
    binary_to_png,
    id_map_to_png,
    instances_to_id_map,
    label_map_to_png,
    mask_to_polygons,
    mask_to_rle,
    polygons_to_mask,
    prediction_to_coco_results,
    rle_area,
    rle_to_mask,
    topk_rows,
    voc_palette,
    write_coco_results,
    write_polygons_json,
)
from segpipe.prediction import Instance, Prediction

CMAP = CategoryMap(tuple(c for c, _ in SHAPE_CATEGORIES), tuple(n for _, n in SHAPE_CATEGORIES))  # ids 3, 7, 12
CLS_MAP = CategoryMap(CMAP.ids, CMAP.names, offset=0)


def _shape_mask(kind, h=96, w=128, seed=0, r=None):
    rng = np.random.default_rng(seed)
    r = r if r is not None else rng.uniform(8, 40)
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(shape_polygon(kind, cx, cy, r, rng)).astype(np.int32)], 1)
    return mask


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


# --- RLE --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_rle_round_trip_is_exact(seed):
    rng = np.random.default_rng(seed)
    mask = (rng.random((37, 53)) < [0.0, 0.1, 0.5, 0.9, 1.0][seed]).astype(np.uint8)
    rle = mask_to_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [37, 53]
    assert rle_area(rle) == mask.sum()
    json.dumps(rle)  # JSON-ready as is
    back = rle_to_mask(rle)
    assert back.dtype == np.uint8 and np.array_equal(back, mask)


def test_rle_treats_any_non_zero_as_foreground():
    assert np.array_equal(rle_to_mask(mask_to_rle(np.array([[0, 255], [True, 3]]))), [[0, 1], [1, 1]])


def test_uncompressed_crowd_rle_decodes_like_pycocotools(tmp_path):
    shapes = make_shapes_coco(tmp_path, n_images=3)
    gt = load_coco_quietly(shapes.annotations)
    crowd = next(a for a in gt.dataset["annotations"] if a["iscrowd"])
    assert isinstance(crowd["segmentation"]["counts"], list)
    assert np.array_equal(rle_to_mask(crowd["segmentation"]), gt.annToMask(crowd))


def test_bad_rle_is_a_data_error():
    with pytest.raises(DataError, match="not a COCO RLE"):
        rle_to_mask({"counts": "abc"})
    with pytest.raises(DataError, match="counts sum to 3, size 2×2 needs 4"):
        rle_to_mask({"size": [2, 2], "counts": [1, 2]})


# --- polygons ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["circle", "square", "triangle"])
@pytest.mark.parametrize("seed", range(4))
def test_polygons_rasterise_back_to_the_mask(kind, seed):
    mask = _shape_mask(kind, seed=seed)
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 1
    assert all(len(p) >= 6 and len(p) % 2 == 0 for p in polygons)
    back = polygons_to_mask(polygons, *mask.shape)
    assert _iou(mask, back) >= 0.95
    # the default tolerance keeps the outline between inside and outside pixel centres: exact
    assert np.array_equal(back, mask)
    coarse = polygons_to_mask(mask_to_polygons(mask, tolerance=1.0), *mask.shape)
    assert _iou(mask, coarse) >= 0.9
    assert sum(map(len, mask_to_polygons(mask, tolerance=1.0))) < sum(map(len, polygons))


def test_masks_touching_the_image_border():
    full = np.ones((10, 12), np.uint8)
    assert np.array_equal(polygons_to_mask(mask_to_polygons(full), 10, 12), full)
    corner = np.zeros((10, 12), np.uint8)
    corner[:5, 7:] = 1
    assert np.array_equal(polygons_to_mask(mask_to_polygons(corner), 10, 12), corner)


def test_polygons_use_coco_pixel_coordinates():
    mask = np.zeros((20, 20), np.uint8)
    mask[5:10, 2:8] = 1  # pixels x 2..7, y 5..9: edges at x 2 and 8, y 5 and 10
    (polygon,) = mask_to_polygons(mask)
    xs, ys = polygon[0::2], polygon[1::2]
    assert 2 <= min(xs) < 2.5 and 7.5 < max(xs) <= 8
    assert 5 <= min(ys) < 5.5 and 9.5 < max(ys) <= 10


def test_several_objects_tiny_objects_and_holes():
    mask = np.zeros((40, 40), np.uint8)
    mask[2, 2] = 1  # a single pixel
    mask[5:6, 10:30] = 1  # a one-pixel-wide line
    cv2.circle(mask, (25, 25), 10, 1, -1)
    cv2.circle(mask, (25, 25), 4, 0, -1)  # a hole
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 3
    back = polygons_to_mask(polygons, 40, 40)
    filled = mask.copy()
    cv2.circle(filled, (25, 25), 4, 1, -1)
    # holes are not representable as COCO polygons: they come back filled, the rest exactly
    assert np.array_equal(back, filled)
    assert mask_to_polygons(np.zeros((8, 8), np.uint8)) == []


def test_polygons_to_mask_refuses_short_polygons():
    with pytest.raises(DataError, match="polygon 1 has 4 coordinates"):
        polygons_to_mask([[0, 0, 5, 0, 5, 5], [1, 1, 2, 2]], 10, 10)
    with pytest.raises(DataError, match="polygon 0 has 7 coordinates"):
        polygons_to_mask([[0, 0, 5, 0, 5, 5, 1]], 10, 10)


# --- COCO results -----------------------------------------------------------------------------


def _instance_prediction(h=48, w=64, image_id=1001):
    a = np.zeros((h, w), np.uint8)
    a[5:20, 10:30] = 1
    b = np.zeros((h, w), np.uint8)
    b[10:40, 20:50] = 1
    return Prediction(
        image_id=image_id,
        task="instance",
        height=h,
        width=w,
        instances=[
            Instance((10.0, 5.0, 30.0, 20.0), 1, 0.9, mask_to_rle(a)),
            Instance((20.0, 10.0, 50.0, 40.0), 3, 0.4, mask_to_rle(b)),
        ],
    ), (a, b)


def test_instance_results_carry_original_ids_xywh_boxes_and_rle():
    pred, (a, b) = _instance_prediction()
    results = prediction_to_coco_results(pred, CMAP)
    assert [r["category_id"] for r in results] == [3, 12]
    assert results[0]["bbox"] == [10.0, 5.0, 20.0, 15.0]
    assert results[1]["score"] == 0.4 and results[1]["image_id"] == 1001
    assert np.array_equal(rle_to_mask(results[0]["segmentation"]), a)
    assert np.array_equal(rle_to_mask(results[1]["segmentation"]), b)


def test_semantic_results_one_rle_per_class_present():
    label_map = np.zeros((16, 16), np.uint8)
    label_map[:4] = 1
    label_map[8:] = 3
    label_map[0, 0] = 255
    pred = Prediction(image_id=np.int64(5), task="semantic", height=16, width=16, label_map=label_map)
    results = prediction_to_coco_results(pred, CMAP)
    assert [r["category_id"] for r in results] == [3, 12]
    assert type(results[0]["image_id"]) is int
    for r, label in zip(results, (1, 3), strict=False):
        assert np.array_equal(rle_to_mask(r["segmentation"]), label_map == label)
    assert results[1]["bbox"] == [0.0, 8.0, 16.0, 8.0]


def test_classification_result_and_unknown_label():
    pred = Prediction("x", "classification", 4, 4, class_id=2, scores=np.array([0.1, 0.2, 0.7]))
    expected = [{"image_id": "x", "category_id": 12, "score": pytest.approx(0.7)}]
    assert prediction_to_coco_results(pred, CLS_MAP) == expected
    bad = Prediction(image_id=9, task="instance", height=4, width=4, instances=[Instance((0, 0, 1, 1), 4, 0.5)])
    with pytest.raises(DataError, match="image 9: predicted label 4 has no category"):
        prediction_to_coco_results(bad, CMAP)


def test_streamed_results_load_in_pycocotools(tmp_path):
    shapes = make_shapes_coco(tmp_path / "data", n_images=4, size=(48, 64))
    gt = load_coco_quietly(shapes.annotations)
    preds = (_instance_prediction(image_id=i)[0] for i in gt.getImgIds())  # a generator, consumed once
    path = tmp_path / "out" / "results.json"
    assert write_coco_results(preds, CMAP, path) == 8
    results = json.loads(path.read_text())
    assert {r["category_id"] for r in results} == {3, 12}
    dt = gt.loadRes(str(path))
    assert len(dt.getAnnIds()) == 8
    assert np.array_equal(dt.annToMask(dt.loadAnns(dt.getAnnIds())[0]), _instance_prediction()[1][0])
    assert write_coco_results(iter([]), CMAP, tmp_path / "empty.json") == 0
    assert json.loads((tmp_path / "empty.json").read_text()) == []


def test_interrupted_stream_leaves_no_results_file(tmp_path):
    def broken():
        yield _instance_prediction()[0]
        raise RuntimeError("worker died")

    with pytest.raises(RuntimeError):
        write_coco_results(broken(), CMAP, tmp_path / "results.json")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its partial copy


# --- PNG ----------------------------------------------------------------------------------------


def test_label_map_png_round_trip_palette_and_plain(tmp_path):
    rng = np.random.default_rng(0)
    label_map = rng.integers(0, 4, size=(33, 47)).astype(np.uint8)
    label_map[0] = 255
    p = label_map_to_png(label_map, tmp_path / "a" / "palette.png")
    with Image.open(p) as im:
        assert im.mode == "P"
        assert im.getpalette()[3:6] == voc_palette()[1].tolist()
        assert np.array_equal(np.asarray(im), label_map)
    assert np.array_equal(read_mask(p), label_map)
    plain = label_map_to_png(label_map, tmp_path / "plain.png", palette=False)
    assert np.array_equal(read_mask(plain), label_map)
    with pytest.raises(ValueError, match="H×W uint8"):
        label_map_to_png(label_map.astype(np.int64), tmp_path / "bad.png")


def test_binary_png_is_0_and_255(tmp_path):
    mask = _shape_mask("circle", 40, 40, r=10)
    path = binary_to_png(mask, tmp_path / "b.png")
    stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(stored)) == {0, 255}
    assert np.array_equal(stored // 255, mask)


def test_instance_id_map_puts_higher_scores_on_top(tmp_path):
    pred, (a, b) = _instance_prediction()
    id_map = instances_to_id_map(pred.instances, 48, 64)
    assert id_map.dtype == np.uint8
    overlap = (a & b).astype(bool)
    assert (id_map[overlap] == 1).all()  # instance 0 scores 0.9 > 0.4
    assert (id_map[b.astype(bool) & ~overlap] == 2).all()
    assert (id_map[(a | b) == 0] == 0).all()
    reversed_scores = [Instance(i.box, i.label, 1 - i.score, i.rle) for i in pred.instances]
    assert (instances_to_id_map(reversed_scores, 48, 64)[overlap] == 2).all()
    stored = cv2.imread(str(id_map_to_png(id_map, tmp_path / "ids.png")), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(stored, id_map)


def test_many_instances_use_a_16_bit_map(tmp_path):
    instances = []
    for i in range(300):
        m = np.zeros((20, 20), np.uint8)
        m.flat[i] = 1
        instances.append(Instance((0, 0, 1, 1), 1, 0.5, mask_to_rle(m)))
    id_map = instances_to_id_map(instances, 20, 20)
    assert id_map.dtype == np.uint16 and id_map.flat[299] == 300 and id_map.flat[300] == 0
    stored = cv2.imread(str(id_map_to_png(id_map, tmp_path / "ids16.png")), cv2.IMREAD_UNCHANGED)
    assert stored.dtype == np.uint16 and np.array_equal(stored, id_map)
    with pytest.raises(ValueError, match="instance 0 has no mask"):
        instances_to_id_map([Instance((0, 0, 1, 1), 1, 0.5)], 20, 20)


# --- polygons JSON and top-k ----------------------------------------------------------------------


def test_polygons_json_round_trip(tmp_path):
    pred, masks = _instance_prediction()
    pred.instances.append(Instance((1.0, 2.0, 5.0, 9.0), 2, 0.3))  # a detection box, no mask
    path = write_polygons_json(pred, CMAP, tmp_path / "p.json")
    doc = json.loads(path.read_text())
    assert (doc["image_id"], doc["height"], doc["width"]) == (1001, 48, 64)
    objects = doc["objects"]
    names = [(o["category_id"], o["category_name"]) for o in objects]
    assert names == [(3, "circle"), (12, "triangle"), (7, "square")]
    for o, mask in zip(objects, masks, strict=False):
        assert _iou(polygons_to_mask(o["polygons"], 48, 64), mask) >= 0.95
    assert objects[2]["polygons"] == [[1.0, 2.0, 5.0, 2.0, 5.0, 9.0, 1.0, 9.0]]
    assert objects[2]["bbox"] == [1.0, 2.0, 4.0, 7.0]

    label_map = np.zeros((32, 32), np.uint8)
    label_map[4:20, 4:20] = 2
    semantic = Prediction(image_id="s", task="semantic", height=32, width=32, label_map=label_map)
    (record,) = json.loads(write_polygons_json(semantic, CMAP, tmp_path / "s.json").read_text())["objects"]
    assert record["category_id"] == 7 and record["score"] is None
    assert np.array_equal(polygons_to_mask(record["polygons"], 32, 32), label_map == 2)


def test_topk_rows():
    pred = Prediction(4, "classification", 4, 4, class_id=1, scores=np.array([0.2, 0.5, 0.3], np.float32))
    rows = topk_rows(pred, CLS_MAP, k=2)
    ranked = [(r["rank"], r["category_id"], r["category_name"]) for r in rows]
    assert ranked == [(1, 7, "square"), (2, 12, "triangle")]
    assert rows[0]["score"] == pytest.approx(0.5)
    assert len(topk_rows(pred, CLS_MAP, k=10)) == 3
    pred.scores = None
    only = {"image_id": 4, "rank": 1, "category_id": 7, "category_name": "square", "score": None}
    assert topk_rows(pred, CLS_MAP) == [only]
