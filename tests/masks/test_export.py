"""The export layer fed in-memory predictions (as ``segpipe predict`` does): the COCO results, PNG and
polygon files decode to the same masks, per task.

The predictions are the ground truth of generated datasets (shapes drawn from polygons, overlapping
at random), so the masks are realistic and the checks do not depend on a trained model; the trained
path is covered in tests/engine/test_predict.py with the same checks (tests/masks/exports.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from segpipe.data.categories import CategoryMap
from segpipe.data.coco import CocoSource
from segpipe.data.folders import MaskFolderSource
from segpipe.data.images import read_image
from segpipe.data.synthetic import make_mask_folders, make_shapes_coco
from segpipe.evaluation.coco import load_coco_quietly, load_results
from segpipe.masks.encode import mask_to_rle
from segpipe.masks.formats import ExportContext, MultiExport
from segpipe.masks.rows import categories_of, export_image
from segpipe.prediction import Instance, Prediction
from tests.masks.exports import check_coco, check_png, check_polygons, decode_rle, rasterise

FORMATS = ["coco-results", "png", "polygons", "overlay", "csv"]


def writer_for(out: Path, formats: list[str], cmap: CategoryMap, task: str) -> MultiExport:
    ctx = ExportContext(task=task, categories=categories_of(cmap), score_threshold=0.0)
    return MultiExport(formats, ctx, out)


def dense_predictions(root: Path, task: str) -> tuple[dict[str, tuple[np.ndarray, Prediction]], CategoryMap]:
    """Ground-truth label maps of generated mask folders as predictions, keyed by output name."""
    images, masks = make_mask_folders(root, n_images=5, size=(40, 56), binary=task == "binary", seed=3)
    if task == "binary":
        source = MaskFolderSource(images, masks, task, foreground_value=255)
    else:
        source = MaskFolderSource(images, masks, task, classes=["background", "circle", "square", "triangle"])
    out = {}
    for i in range(len(source)):
        s = source.load(i)
        assert s.label_map is not None
        out[str(s.image_id)] = (s.image, Prediction(s.image_id, task, *s.size, label_map=s.label_map))
    # a region with a hole (a ring around another region), which polygons cannot hold
    ring = np.zeros((40, 56), np.uint8)
    ring[5:30, 10:40] = 1
    ring[12:20, 18:30] = 2 if task == "semantic" else 0
    out["nested/ring"] = (np.zeros((40, 56, 3), np.uint8), Prediction("nested/ring", task, 40, 56, label_map=ring))
    return out, source.category_map


def instance_predictions(root: Path) -> tuple[dict[str, tuple[np.ndarray, Prediction]], CategoryMap, Path]:
    """Ground-truth instances of a generated COCO dataset as predictions with distinct scores."""
    coco = make_shapes_coco(root, n_images=6, size=(48, 64), max_shapes=4, seed=5, crowd=False)
    source = CocoSource(coco.images, coco.annotations, "instance")
    rng = np.random.default_rng(0)
    out = {}
    for i in range(len(source)):
        s = source.load(i)
        instances = [
            Instance(tuple(float(v) for v in box), int(label), float(score), mask_to_rle(mask))
            for box, label, mask, score in zip(s.boxes, s.labels, s.masks, rng.permutation(len(s.labels)) / 10 + 0.5,
                                               strict=True)
        ]
        out[Path(s.meta["file_name"]).stem] = (s.image, Prediction(s.image_id, "instance", *s.size, instances=instances))
    return out, source.category_map, coco.annotations


def write_all(out: Path, items: dict[str, tuple[np.ndarray, Prediction]], cmap: CategoryMap, task: str) -> dict:
    writer = writer_for(out, FORMATS, cmap, task)
    for name, (image, pred) in items.items():
        writer.add(export_image(pred, cmap, name + ".png", image=image))
    files = writer.close()
    assert all(p.is_file() for written in files.values() for p in written)
    return {"images": writer.images, "coco_results": len(json.loads((out / "predictions.json").read_text()))}


@pytest.mark.parametrize("task", ["semantic", "binary"])
def test_dense_exports_decode_to_the_label_map(tmp_path: Path, task: str) -> None:
    items, cmap = dense_predictions(tmp_path / "data", task)
    summary = write_all(tmp_path / "out", items, cmap, task)
    preds = {name: pred for name, (_, pred) in items.items()}
    assert summary["images"] == len(items) and summary["coco_results"] == check_coco(tmp_path / "out", preds, cmap) > 0
    for name, pred in preds.items():
        check_png(tmp_path / "out", name, pred, task, cmap)
        check_polygons(tmp_path / "out", name, pred, cmap)
    ring = json.loads((tmp_path / "out" / "polygons" / "nested" / "ring.json").read_text())["objects"][0]
    assert rasterise(ring["polygons"], 40, 56)[15, 20] == 1  # the hole comes back filled


def test_instance_exports_decode_to_the_instance_masks(tmp_path: Path) -> None:
    items, cmap, annotations = instance_predictions(tmp_path / "data")
    write_all(tmp_path / "out", items, cmap, "instance")
    preds = {name: pred for name, (_, pred) in items.items()}
    assert check_coco(tmp_path / "out", preds, cmap) == sum(len(p.instances) for p in preds.values())
    for name, pred in preds.items():
        check_png(tmp_path / "out", name, pred, "instance", cmap)
        check_polygons(tmp_path / "out", name, pred, cmap)
    # some instances overlap, so the id map's "higher score wins" rule was exercised
    assert any(len(p.instances) > 1 and (sum(decode_rle(i.rle) for i in p.instances) > 1).any() for p in preds.values())

    # the results file imports against the dataset it was predicted for: ground truth scores AP 1
    gt = load_coco_quietly(annotations)
    dt = load_results(gt, json.loads((tmp_path / "out" / "predictions.json").read_text()))
    ev = COCOeval(gt, dt, "segm")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_overlays_and_csv_lines(tmp_path: Path) -> None:
    items, cmap, _ = instance_predictions(tmp_path / "data")
    write_all(tmp_path / "out", items, cmap, "instance")
    for name, (image, _) in items.items():
        picture = read_image(tmp_path / "out" / "overlays" / f"{name}.png")
        h, w = image.shape[:2]
        scale = picture.shape[0] // h
        assert scale >= 1 and picture.shape[:2] == (h * scale, w * scale)  # enlarged by a whole factor
    lines = (tmp_path / "out" / "predictions.csv").read_text().splitlines()[1:]
    assert len(lines) == sum(len(p.instances) for _, p in items.values())


def test_classification_csv_and_results_top_k(tmp_path: Path) -> None:
    cmap = CategoryMap((3, 7, 12), ("circle", "square", "triangle"), offset=0)
    scores = {"a": [0.1, 0.7, 0.2], "nested/b": [0.5, 0.2, 0.3]}
    writer = writer_for(tmp_path, ["csv", "coco-results"], cmap, "classification")
    for name, s in scores.items():
        p = np.array(s, np.float32)
        pred = Prediction(name, "classification", 8, 8, class_id=int(p.argmax()), scores=p)
        writer.add(export_image(pred, cmap, name + ".jpg", topk=2))
    writer.close()
    rows = (tmp_path / "predictions.csv").read_text().splitlines()
    assert rows[0].split(",") == ["file", "image_id", "rank", "category_id", "category_name", "score"]
    assert [r.split(",")[:5] for r in rows[1:]] == [
        ["a", "a", "1", "7", "square"], ["a", "a", "2", "12", "triangle"],
        ["nested/b", "nested/b", "1", "3", "circle"], ["nested/b", "nested/b", "2", "12", "triangle"],
    ]  # fmt: skip
    results = json.loads((tmp_path / "predictions.json").read_text())
    assert [(r["image_id"], r["category_id"]) for r in results] == [("a", 7), ("a", 12), ("nested/b", 3), ("nested/b", 12)]


def test_abort_leaves_no_half_written_results(tmp_path: Path) -> None:
    items, cmap = dense_predictions(tmp_path / "data", "binary")
    writer = writer_for(tmp_path / "out", ["coco-results"], cmap, "binary")
    name, (image, pred) = next(iter(items.items()))
    writer.add(export_image(pred, cmap, name + ".png", image=image))
    writer.abort()
    assert not (tmp_path / "out" / "predictions.json").exists()
    assert list((tmp_path / "out").iterdir()) == []
