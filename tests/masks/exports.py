"""Reading back what the export layer (`segpipe.masks.formats`) wrote, by independent means (pycocotools,
PIL / cv2, numpy), and checking it against the predictions it was given. Shared by the writer's own
tests (tests/masks/test_export.py) and the end-to-end prediction tests (tests/engine/test_predict.py).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from segpipe.data.categories import CategoryMap
from segpipe.prediction import Prediction


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """pycocotools' own decoder on an RLE as it appears in a results file (counts as str)."""
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")})


def rasterise(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """pycocotools' rasteriser, as an annotation tool importing the polygons would use it."""
    if not polygons:
        return np.zeros((height, width), np.uint8)
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width)))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` with every background region that cannot reach the image border filled in.

    Polygons hold outer boundaries only, so this is what they can represent. Foreground outlines are
    8-connected (cv2.findContours), so the background is split into 4-connected regions."""
    n, regions = cv2.connectedComponents((mask == 0).astype(np.uint8), connectivity=4)
    border = set(np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]])).tolist())
    holes = np.isin(regions, [r for r in range(1, n) if r not in border])
    return (mask.astype(bool) | holes).astype(np.uint8)


def results_by_image(path: Path) -> dict[Any, list[dict[str, Any]]]:
    """predictions.json grouped by image id, in file order."""
    grouped: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for result in json.loads(path.read_text()):
        grouped[result["image_id"]].append(result)
    return grouped


def object_masks(pred: Prediction, category_map: CategoryMap) -> list[tuple[int, np.ndarray]]:
    """(original category id, H×W mask) per object of a prediction, in export order: instances in
    their order; label-map classes in increasing label order (background and ignore excluded)."""
    if pred.label_map is None:
        return [(category_map.to_category(i.label), decode_rle(i.rle)) for i in pred.instances]  # type: ignore[arg-type]
    labels = [int(v) for v in np.unique(pred.label_map) if v not in (0, 255)]
    return [(category_map.to_category(v), (pred.label_map == v).astype(np.uint8)) for v in labels]


def check_coco(out: Path, preds: dict[str, Prediction], category_map: CategoryMap) -> int:
    """Every mask in predictions.json decodes to the prediction's; category ids are the original ones.
    Returns the number of results checked."""
    grouped = results_by_image(out / "predictions.json")
    checked = 0
    for pred in preds.values():
        results = grouped.pop(pred.image_id, [])
        expected = object_masks(pred, category_map)
        assert [r["category_id"] for r in results] == [c for c, _ in expected], pred.image_id
        for result, (_, mask) in zip(results, expected, strict=True):
            assert result["segmentation"]["size"] == [pred.height, pred.width]
            assert np.array_equal(decode_rle(result["segmentation"]), mask), pred.image_id
            checked += 1
        if pred.instances:  # boxes and scores as predicted (label maps: tight box, score 1)
            for result, inst in zip(results, pred.instances, strict=True):
                x1, y1, x2, y2 = inst.box
                np.testing.assert_allclose(result["bbox"], [x1, y1, x2 - x1, y2 - y1], rtol=0, atol=1e-4)
                assert result["score"] == inst.score
    assert not grouped, f"results for images that were not predicted: {list(grouped)}"
    return checked


def check_png(out: Path, name: str, pred: Prediction, task: str, category_map: CategoryMap | None = None) -> None:
    """masks/<name>.png is the class map (pixel = ORIGINAL category id, 0 = none; a palette PNG); for
    instance jobs instances/<name>.png is the instance map (pixel = 1 + instance index) and the class
    map holds the category of the instance that owns each pixel (overlaps go to the higher score)."""
    path = out / "masks" / f"{name}.png"
    with Image.open(path) as im:
        assert im.mode == "P"  # viewable in colour, values unchanged
        classes = np.asarray(im)
    assert classes.shape == (pred.height, pred.width)
    if task in ("semantic", "binary"):
        if category_map is None:
            return
        expected = np.zeros_like(pred.label_map)
        for label in np.unique(pred.label_map):
            if label not in (0, 255):
                expected[pred.label_map == label] = category_map.to_category(int(label))
        assert np.array_equal(classes, expected)
        return
    stored = cv2.imread(str(out / "instances" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    masks = np.stack([decode_rle(i.rle) for i in pred.instances]) if pred.instances else np.zeros(
        (0, pred.height, pred.width), np.uint8
    )
    scores = np.array([i.score for i in pred.instances])
    assert stored.shape == (pred.height, pred.width)
    assert np.array_equal(stored > 0, masks.any(axis=0) if len(masks) else np.zeros_like(stored, bool))
    assert np.array_equal(classes > 0, stored > 0)
    if len(masks):
        # the covering instance with the highest score (ties: the later one) owns each pixel
        rank = np.argsort(np.argsort(scores, kind="stable"), kind="stable") + 1
        owner = np.argmax(masks * rank[:, None, None], axis=0) + 1
        covered = stored > 0
        assert np.array_equal(stored[covered], owner[covered])
        sidecar = json.loads((out / "instances" / f"{name}.json").read_text())
        assert [i["value"] for i in sidecar["instances"]] == list(range(1, len(pred.instances) + 1))
        if category_map is not None:
            by_value = {i["value"]: i["category_id"] for i in sidecar["instances"]}
            assert all(classes[y, x] == by_value[int(stored[y, x])] for y, x in zip(*np.nonzero(covered), strict=True))


def check_polygons(out: Path, name: str, pred: Prediction, category_map: CategoryMap) -> None:
    """polygons/<name>.json rasterises back to each object's mask, exactly up to filled holes."""
    document = json.loads((out / "polygons" / f"{name}.json").read_text())
    assert (document["image_id"], document["height"], document["width"]) == (pred.image_id, pred.height, pred.width)
    expected = object_masks(pred, category_map)
    assert [o["category_id"] for o in document["objects"]] == [c for c, _ in expected]
    for obj, (category_id, mask) in zip(document["objects"], expected, strict=True):
        assert obj["category_name"] == category_map.names[category_map.ids.index(category_id)]
        back = rasterise(obj["polygons"], pred.height, pred.width)
        assert np.array_equal(back, fill_holes(mask)), f"{name}: category {category_id}"
