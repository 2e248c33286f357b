"""Prediction with trained checkpoints: answers come back in original pixels (letterboxed, tiled,
non-square, larger than the training size), every file format decodes to the predictions, and the
COCO metrics segpipe reports equal pycocotools run by hand on the exported results file."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from segpipe.config import PredictConfig
from segpipe.data.images import read_image, read_mask
from segpipe.engine.checkpoint import BEST
from segpipe.engine.predict import image_items, load_model, predict_arrays, predict_items
from segpipe.engine.runner import evaluate_checkpoint, predict_to_files
from segpipe.evaluation.coco import STAT_NAMES, load_coco_quietly
from segpipe.prediction import Prediction
from tests.engine.runs import Run
from tests.masks.exports import check_coco, check_png, check_polygons, decode_rle

SHAPE_NAMES = ("circle", "square", "triangle")


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    return float((pred & truth).sum() / max((pred | truth).sum(), 1))


def mean_iou(pred: np.ndarray, truth: np.ndarray, labels: range) -> float:
    valid = truth != 255
    ious = [iou((pred == k) & valid, (truth == k) & valid) for k in labels if ((truth == k) | (pred == k)).any()]
    return float(np.mean(ious))


def predict_folder(run: Run, folder: Path, out: Path, **options: object) -> dict[str, Prediction]:
    """predict_to_files over a folder; returns the predictions by output name."""
    preds: dict[str, Prediction] = {}
    cfg = PredictConfig(**options)  # type: ignore[arg-type]
    summary = predict_to_files(run.dir, folder, out, cfg, device="cpu",
                               on_image=lambda it, p, _cmap: preds.setdefault(it.name, p))
    assert summary["images"] == len(preds) and summary["task"] == run.config.task
    assert summary["checkpoint"] == str(run.dir / BEST)
    return preds


# ------------------------------------------------------------------------------ semantic / binary


def test_letterboxed_prediction_maps_back_to_non_square_originals(semantic_run: Run, tmp_path: Path) -> None:
    """The training images (48×64), the same at twice the size, and turned to portrait: each is
    letterboxed to the training size and the answer mapped back onto its own pixels. Where that
    mapping is right, the enlarged and turned copies score against their (enlarged, turned) ground
    truth about as well as the originals do; a misplaced or stretched map would lose most of it."""
    data = semantic_run.data
    truth: dict[str, np.ndarray] = {}
    for path in sorted((data / "images").glob("*.png")):
        image, mask = read_image(path), read_mask(data / "masks" / path.name)
        write_rgb(tmp_path / "in" / path.name, image)
        truth[path.stem] = mask
        big = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
        write_rgb(tmp_path / "in" / f"{path.stem}_x2.png", big)
        truth[f"{path.stem}_x2"] = cv2.resize(mask, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
        write_rgb(tmp_path / "in" / f"{path.stem}_portrait.png", np.ascontiguousarray(image.transpose(1, 0, 2)))
        truth[f"{path.stem}_portrait"] = np.ascontiguousarray(mask.T)

    preds = predict_folder(semantic_run, tmp_path / "in", tmp_path / "out", formats=["png", "coco-results", "coco", "polygons"])
    assert sorted(preds) == sorted(truth)
    cmap = load_model(semantic_run.dir, "cpu").category_map
    score = {}
    for name, pred in preds.items():
        assert pred.label_map is not None and pred.label_map.shape == truth[name].shape == (pred.height, pred.width)
        score[name] = mean_iou(pred.label_map, truth[name], range(1, 4))
        check_png(tmp_path / "out", name, pred, "semantic", cmap)
        check_polygons(tmp_path / "out", name, pred, cmap)
    check_coco(tmp_path / "out", preds, cmap)
    originals = [path.stem for path in (data / "images").glob("*.png")]
    assert np.mean([score[n] for n in originals]) >= 0.6, score
    for name in originals:
        for variant in (f"{name}_x2", f"{name}_portrait"):
            assert score[variant] >= score[name] - 0.15, (variant, score[variant], score[name])


def test_tiles_cover_an_image_larger_than_the_training_size(binary_run: Run, tmp_path: Path) -> None:
    """A 2×2 mosaic of training images (64×96) predicted in 48-pixel windows at native resolution,
    and an image smaller than one tile (padded), both answered at full size."""
    coco = load_coco_quietly(binary_run.data / "annotations.json")
    loaded = load_model(binary_run.dir, "cpu")
    ids = [i for i in sorted(coco.imgs) if coco.getAnnIds(imgIds=i, iscrowd=False)][:4]
    images = [read_image(binary_run.data / "images" / coco.imgs[i]["file_name"]) for i in ids]
    masks = []
    for i in ids:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=i, iscrowd=False))
        masks.append(np.max([coco.annToMask(a) for a in anns], axis=0))
    mosaic = np.concatenate([np.concatenate(images[:2], axis=1), np.concatenate(images[2:], axis=1)], axis=0)
    truth = np.concatenate([np.concatenate(masks[:2], axis=1), np.concatenate(masks[2:], axis=1)], axis=0)
    write_rgb(tmp_path / "in" / "mosaic.png", mosaic)
    write_rgb(tmp_path / "in" / "small.png", images[0][:20, :30])

    preds = predict_folder(binary_run, tmp_path / "in", tmp_path / "out", formats=["png", "coco-results", "coco", "polygons"],
                           tile_size=48, tile_overlap=0.25)
    tiled = preds["mosaic"].label_map
    assert tiled is not None and tiled.shape == truth.shape == (64, 96)
    assert iou(tiled == 1, truth == 1) >= 0.7, iou(tiled == 1, truth == 1)
    small = preds["small"].label_map
    assert small is not None and small.shape == (20, 30)
    for name, pred in preds.items():
        check_png(tmp_path / "out", name, pred, "binary", loaded.category_map)
        check_polygons(tmp_path / "out", name, pred, loaded.category_map)
    check_coco(tmp_path / "out", preds, loaded.category_map)

    # a tile the size of the training input over an image of that size is one window, no padding,
    # no averaging: the same answer as plain (letterboxed, here unscaled) prediction
    crop = np.ascontiguousarray(mosaic[:48, :48])
    one_tile = predict_arrays(loaded, [crop], ["crop"], PredictConfig(tile_size=48))[0]
    plain = predict_arrays(loaded, [crop], ["crop"], PredictConfig())[0]
    assert np.array_equal(one_tile.label_map, plain.label_map) and plain.label_map.any()  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------- classification


def test_classification_top_k_files_and_overlays(classification_run: Run, tmp_path: Path) -> None:
    root = classification_run.data
    preds = predict_folder(classification_run, root, tmp_path / "out", formats=["csv", "coco-results", "overlay"], topk=2)
    assert len(preds) == 18 and all(name.split("/")[0] in SHAPE_NAMES for name in preds)  # nested names
    with (tmp_path / "out" / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * len(preds)
    top = {r["file"]: r for r in rows if r["rank"] == "1"}
    correct = sum(top[name]["category_name"] == name.split("/")[0] for name in preds)
    assert correct / len(preds) >= 0.9
    for name, pred in preds.items():
        ranked = [r for r in rows if r["file"] == name]
        assert float(ranked[0]["score"]) >= float(ranked[1]["score"])
        assert float(ranked[0]["score"]) == pytest.approx(float(pred.scores.max()))  # type: ignore[union-attr]
        overlay = read_image(tmp_path / "out" / "overlays" / f"{name}.png")
        assert overlay.shape[0] >= 256 and overlay.shape[0] % 32 == 0  # enlarged 32 px image
    results = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(results) == 2 * len(preds)  # the same top-k rows as the csv


# ---------------------------------------------------------------------------------------- instance


def by_hand(gt_path: Path, results_path: Path, iou_type: str) -> np.ndarray:
    """COCOeval as its users run it: loadRes on the results file, defaults everywhere. For masks the
    results' boxes are dropped first (area and box then come from the mask, as in detectron2),
    which is what segpipe documents for segm."""
    gt = load_coco_quietly(gt_path)
    results = json.loads(results_path.read_text())
    if iou_type == "segm":
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.mark.slow
def test_coco_metrics_equal_pycocotools_on_the_exported_results(instance_run: Run, tmp_path: Path) -> None:
    """The evaluator sees every detection the model keeps (score ≥ 0.05, its default), so the results
    are exported at that threshold and with the training batch size (same batches, same numbers)."""
    annotations = instance_run.data / "annotations.json"
    preds: dict[str, Prediction] = {}
    cfg = PredictConfig(score_threshold=0.05, batch_size=instance_run.config.train.batch_size,
                        formats=["coco-results", "coco", "png", "polygons", "overlay"])
    predict_to_files(instance_run.dir, instance_run.data / "images", tmp_path, cfg, annotations=annotations,
                     device="cpu", on_image=lambda it, p, _cmap: preds.setdefault(it.name, p))
    assert sorted(p.image_id for p in preds.values()) == sorted(load_coco_quietly(annotations).imgs)

    reported = evaluate_checkpoint(instance_run.config, instance_run.dir, device="cpu")
    assert reported["segm_AP"] > 0.2  # a model that finds the shapes, so the comparison means something
    for iou_type in ("bbox", "segm"):
        stats = by_hand(annotations, tmp_path / "predictions.json", iou_type)
        ours = [reported[f"{iou_type}_{name}"] for name in STAT_NAMES]
        assert ours == stats[: len(STAT_NAMES)].tolist(), iou_type
        assert [instance_run.result.metrics[f"{iou_type}_{n}"] for n in STAT_NAMES] == ours  # finish_run too

    # and the exported files decode to the same masks, with the dataset's own category ids
    cmap = load_model(instance_run.dir, "cpu").category_map
    assert check_coco(tmp_path, preds, cmap) > 0
    for name, pred in preds.items():
        check_png(tmp_path, name, pred, "instance", cmap)
        check_polygons(tmp_path, name, pred, cmap)
        assert (tmp_path / "overlays" / f"{name}.png").is_file()
    assert {r["category_id"] for r in json.loads((tmp_path / "predictions.json").read_text())} <= {3, 7, 12}


@pytest.mark.slow
def test_instance_score_threshold_filters_exports(instance_run: Run, tmp_path: Path) -> None:
    loaded = load_model(instance_run.dir, "cpu")
    items = image_items(instance_run.data / "images", instance_run.data / "annotations.json")
    low = [p for _, _, p in predict_items(loaded, items, PredictConfig(score_threshold=0.05))]
    high = [p for _, _, p in predict_items(loaded, items, PredictConfig(score_threshold=0.5, score_floor=0.5))]
    # the default floor (0.05) keeps what a 0.5 threshold hides: the threshold is applied when exporting
    stored = [p for _, _, p in predict_items(loaded, items, PredictConfig(score_threshold=0.5))]
    assert [[i.score for i in p.instances] for p in stored] == [[i.score for i in p.instances] for p in low]
    for lo, hi in zip(low, high, strict=True):
        assert (lo.height, lo.width) == (64, 64) and all(i.rle["size"] == [64, 64] for i in lo.instances)  # type: ignore[index]
        assert [i.score for i in hi.instances] == [i.score for i in lo.instances if i.score >= 0.5]
        for inst in hi.instances:  # each mask lies in its box, which Mask R-CNN grows by 1/28 per
            # side before pasting its 28×28 mask into whole pixels
            ys, xs = np.nonzero(decode_rle(inst.rle))  # type: ignore[arg-type]
            x1, y1, x2, y2 = inst.box
            mx, my = (x2 - x1) / 28 + 1.5, (y2 - y1) / 28 + 1.5
            assert len(xs) and xs.min() >= x1 - mx and xs.max() <= x2 + mx and ys.min() >= y1 - my and ys.max() <= y2 + my
