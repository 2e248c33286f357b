"""Pre-labels an annotator must clean up: duplicates per true object, and mask AP, before / after suppression.

    python bench/prelabel_duplicates.py [--quick] [--epochs N] [--checkpoint RUN_DIR]

The demo's light Mask R-CNN (`segpipe.cli.demo.demo_train_spec`, 96-px shapes) is trained in process (or a
trained run is given with ``--checkpoint``), then predicts held-out shapes images (``--images``, made
with another seed) keeping everything above the predict jobs' floor (0.05). For each score threshold
(the export's view) it counts, against the ground truth:

- ``dup/obj``: predictions beyond the first that match an already-matched true object (mask IoU ≥ 0.5,
  any class), per true object: each is a deletion for the annotator;
- ``fp/img``: predictions matching no true object; ``recall``: true objects matched by some prediction;

with the rows as stored ("raw") and after `segpipe.masks.duplicates.suppress_duplicates` (IoU 0.5,
across classes; what the label-studio and cvat-mask exports do by default). Mask AP (pycocotools
COCOeval, segm) is computed over all rows above the floor, raw and suppressed.
Prints a table and one JSON line.

``--dataset isbi-cells`` measures the same on real data: the ISBI 2012 EM slices of ``../shared/data``
(see its README), each cell interior (a connected component of the label's 255 pixels) one "cell"
instance, slices cut into 128-px tiles; slices 0–21 train the light Mask R-CNN, 22–24 validate, and the
tiles of the held-out contiguous block 25–29 are the test images. Dense, touching objects of one class: where duplicates of
the same class, not across classes, are what an annotator meets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segpipe.masks.duplicates import suppress_duplicates  # noqa: E402
from segpipe.masks.rows import DEFAULT_SCORE_FLOOR, PredictionRow  # noqa: E402

THRESHOLDS = (0.5, 0.3, 0.1)
MATCH_IOU = 0.5


def _train(root: Path, epochs: int, train_images: int) -> Path:
    import torch

    from segpipe.cli.demo import DemoPlan, demo_train_spec, make_demo_data
    from segpipe.config import from_dict
    from segpipe.engine.runner import train

    plan = DemoPlan(home=root, out=root / "out", epochs=epochs, train_images=train_images, image_size=96)
    make_demo_data(root / "data", plan)
    spec = demo_train_spec(root / "data", plan) | {"output_dir": str(root / "run")}
    spec["train"] = {**spec["train"], "device": "cpu", "seed": 0}
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    result = train(from_dict(spec), show_progress=False)
    assert result.best_checkpoint is not None
    return Path(result.best_checkpoint)


ISBI = REPO.parent / "shared" / "data" / "isbi2012_em" / "train"
ISBI_TILE = 128
ISBI_TEST_SLICES = range(25, 30)


def _isbi_cells(out: Path, slices: range, tile: int = ISBI_TILE, min_area: int = 12) -> tuple[Path, Path]:
    """ISBI slices → a COCO instances set of ``tile``-px tiles: each connected cell interior one "cell"
    (components under ``min_area`` pixels, slivers at tile edges, are left out). Returns (images, annotations)."""
    import cv2

    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    coco: dict[str, Any] = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "cell"}]}
    for index in slices:
        image = cv2.imread(str(ISBI / "image" / f"{index}.png"), cv2.IMREAD_GRAYSCALE)
        label = cv2.imread(str(ISBI / "label" / f"{index}.png"), cv2.IMREAD_GRAYSCALE)
        if image is None or label is None:
            raise SystemExit(f"ISBI slice {index} is missing under {ISBI} (see ../shared/data/README.md)")
        for y in range(0, image.shape[0], tile):
            for x in range(0, image.shape[1], tile):
                image_id = len(coco["images"]) + 1
                name = f"{index:02d}_{y:03d}_{x:03d}.png"
                cv2.imwrite(str(images / name), cv2.cvtColor(image[y:y + tile, x:x + tile], cv2.COLOR_GRAY2RGB))
                coco["images"].append({"id": image_id, "file_name": name, "height": tile, "width": tile})
                count, components = cv2.connectedComponents((label[y:y + tile, x:x + tile] > 127).astype(np.uint8), 4)
                for value in range(1, count):
                    mask = np.asfortranarray((components == value).astype(np.uint8))
                    area = int(mask.sum())
                    if area < min_area:
                        continue
                    rle = mask_utils.encode(mask)
                    rle["counts"] = rle["counts"].decode()
                    coco["annotations"].append({
                        "id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": 1,
                        "segmentation": rle, "area": area, "iscrowd": 0,
                        "bbox": [float(v) for v in mask_utils.toBbox(rle)]})
    annotations = out / "annotations.json"
    annotations.write_text(json.dumps(coco))
    return images, annotations


def _train_isbi(root: Path, epochs: int) -> Path:
    import torch

    from segpipe.config import from_dict
    from segpipe.engine.runner import train

    train_images, train_annotations = _isbi_cells(root / "train", range(22))
    val_images, val_annotations = _isbi_cells(root / "val", range(22, 25))
    spec = {
        "name": "isbi-cells", "task": "instance", "output_dir": str(root / "run"),
        "data": {"train": {"images": str(train_images), "annotations": str(train_annotations)},
                 "val": {"images": str(val_images), "annotations": str(val_annotations)}, "num_workers": 0},
        "augment": {"preset": "light"},
        # the demo's light Mask R-CNN, sized for a tile of a few dozen cells instead of three shapes
        "model": {"name": "maskrcnn_resnet18_fpn", "min_size": ISBI_TILE, "max_size": ISBI_TILE,
                  "rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_train": 300,
                  "rpn_pre_nms_top_n_test": 600, "rpn_post_nms_top_n_test": 300,
                  "rpn_batch_size_per_image": 128, "box_batch_size_per_image": 64, "box_detections_per_img": 100},
        "train": {"epochs": epochs, "batch_size": 4, "image_size": ISBI_TILE, "lr": 0.01, "optimizer": "sgd",
                  "warmup_steps": 20, "grad_clip": 10.0, "device": "cpu", "seed": 0},
    }
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    result = train(from_dict(spec), show_progress=False)
    assert result.best_checkpoint is not None
    return Path(result.best_checkpoint)


def _predict(checkpoint: Path, coco_file: Path, images_dir: Path) -> tuple[dict[int, list[PredictionRow]], Any]:
    from segpipe.config import PredictConfig
    from segpipe.data.images import read_image
    from segpipe.engine.predict import load_model, predict_arrays
    from segpipe.masks.rows import export_image

    loaded = load_model(checkpoint, device="cpu")
    gt = COCO(str(coco_file))
    cfg = PredictConfig(score_threshold=0.5, score_floor=DEFAULT_SCORE_FLOOR, batch_size=4)
    rows: dict[int, list[PredictionRow]] = {}
    for image_id in gt.getImgIds():
        info = gt.loadImgs(image_id)[0]
        image = read_image(images_dir / info["file_name"])
        (pred,) = predict_arrays(loaded, [image], [image_id], cfg)
        rows[image_id] = export_image(pred, loaded.category_map, info["file_name"]).rows
    return rows, gt


def _counts(rows: dict[int, list[PredictionRow]], gt: COCO) -> dict[str, float]:
    objects = duplicates = false_pos = matched_objects = predictions = 0
    for image_id, image_rows in rows.items():
        anns = [a for a in gt.loadAnns(gt.getAnnIds(imgIds=image_id)) if not a.get("iscrowd")]
        objects += len(anns)
        predictions += len(image_rows)
        if not image_rows:
            continue
        if not anns:
            false_pos += len(image_rows)
            continue
        gt_rles = [gt.annToRLE(a) for a in anns]
        dt_rles = [{"size": r.rle["size"], "counts": r.rle["counts"].encode()} for r in image_rows if r.rle]
        ious = np.asarray(mask_utils.iou(dt_rles, gt_rles, [0] * len(gt_rles))).reshape(len(dt_rles), len(gt_rles))
        hits = [0] * len(anns)
        for k in range(len(dt_rles)):
            best = int(ious[k].argmax())
            if ious[k, best] >= MATCH_IOU:
                hits[best] += 1
            else:
                false_pos += 1
        duplicates += sum(max(0, h - 1) for h in hits)
        matched_objects += sum(1 for h in hits if h)
    images = max(len(rows), 1)
    return {"objects": objects, "predictions": predictions, "dup_per_object": round(duplicates / max(objects, 1), 3),
            "duplicates": duplicates, "fp_per_image": round(false_pos / images, 3),
            "recall": round(matched_objects / max(objects, 1), 3)}


def _mask_ap(rows: dict[int, list[PredictionRow]], gt: COCO) -> dict[str, float]:
    results = [{"image_id": image_id, "category_id": r.category_id, "score": r.score, "segmentation": r.rle}
               for image_id, image_rows in rows.items() for r in image_rows if r.rle is not None]
    if not results:
        return {"segm_AP": 0.0, "segm_AP50": 0.0}
    dt = gt.loadRes(results)
    evaluator = COCOeval(gt, dt, "segm")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return {"segm_AP": round(float(evaluator.stats[0]), 4), "segm_AP50": round(float(evaluator.stats[1]), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 epochs on 40 images, 20 test images")
    parser.add_argument("--dataset", choices=("shapes", "isbi-cells"), default="shapes",
                        help="the demo's synthetic shapes, or real EM cells (../shared/data/isbi2012_em)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--images", type=int, default=None, help="held-out test images")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a trained demo checkpoint (skip training)")
    parser.add_argument("--work", type=Path, default=None, help="keep the data and trained run here (reuse with "
                        "--checkpoint WORK/run/best.pt)")
    parser.add_argument("--ious", default="0.5,0.6,0.7,0.8", help="same-class suppression IoU thresholds to compare "
                        "(across classes: min(0.5, it)); 0.7 is the default of the exports")
    args = parser.parse_args()
    ious = [float(x) for x in args.ious.split(",")]
    epochs = args.epochs or (3 if args.quick else 5)
    n_test = args.images or (20 if args.quick else 60)
    from segpipe.data.synthetic import make_shapes_coco

    with tempfile.TemporaryDirectory(prefix="segpipe-bench-prelabels-") as tmp:
        root = args.work or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        if args.dataset == "isbi-cells":
            checkpoint = args.checkpoint or _train_isbi(root, epochs)
            trained_s = time.perf_counter() - began
            test_images, test_annotations = _isbi_cells(root / "test", ISBI_TEST_SLICES)
            n_test = len(json.loads(test_annotations.read_text())["images"])
            rows, gt = _predict(checkpoint, test_annotations, test_images)
        else:
            checkpoint = args.checkpoint or _train(root, epochs, 40 if args.quick else 80)
            trained_s = time.perf_counter() - began
            test = make_shapes_coco(root / "test", n_images=n_test, size=(96, 96), seed=77)
            rows, gt = _predict(checkpoint, test.annotations, test.images)
        sides = {"raw": lambda v: v, **{f"iou {iou:g}": (lambda v, iou=iou: suppress_duplicates(v, iou)) for iou in ious}}
        table: dict[str, Any] = {}
        for threshold in THRESHOLDS:
            view = {k: [r for r in v if (r.score or 0) >= threshold] for k, v in rows.items()}
            table[str(threshold)] = {side: _counts({k: f(v) for k, v in view.items()}, gt) for side, f in sides.items()}
        ap = {side: _mask_ap({k: f(v) for k, v in rows.items()}, gt) for side, f in sides.items()}
    print(f"\n{'threshold':<10}{'rows':<12}{'preds':>7}{'dup/obj':>9}{'fp/img':>8}{'recall':>8}")
    for threshold, by_side in table.items():
        for side, c in by_side.items():
            print(f"{threshold:<10}{side:<12}{c['predictions']:>7}{c['dup_per_object']:>9.3f}{c['fp_per_image']:>8.2f}"
                  f"{c['recall']:>8.3f}")
    print(f"mask AP over every row ≥ {DEFAULT_SCORE_FLOOR}:")
    for side, values in ap.items():
        print(f"  {side:<10} segm_AP {values['segm_AP']:.4f}  AP50 {values['segm_AP50']:.4f}")
    print(json.dumps({"bench": "prelabel_duplicates", "dataset": args.dataset, "epochs": epochs, "test_images": n_test,
                      "objects": table["0.5"]["raw"]["objects"], "train_seconds": round(trained_s, 1),
                      "loadavg_1m": round(os.getloadavg()[0], 2), "cpus": len(os.sched_getaffinity(0)),
                      "by_threshold": table, "mask_ap": ap}))


if __name__ == "__main__":
    main()
