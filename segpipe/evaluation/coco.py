"""COCO box and mask AP through pycocotools' COCOeval: the numbers are COCOeval's own ``stats``.

What is evaluated, so a by-hand pycocotools run can reproduce it exactly:

- results are those of ``segpipe.masks.encode.prediction_to_coco_results`` (original category ids),
  in processing order; for ``bbox`` each result keeps ``image_id, category_id, bbox, score``; for
  ``segm`` each keeps ``image_id, category_id, segmentation, score`` — the box is dropped so that
  ``COCO.loadRes`` takes area and box from the mask, as detectron2 does (otherwise small / medium /
  large would be judged by box area);
- ``params.imgIds`` = the processed images (sorted), including those with no detections;
- ``params.catIds`` = the CategoryMap's ids (sorted), i.e. the categories the model knows;
- everything else is COCOeval's default (maxDets 1/10/100, area ranges, 10 IoU thresholds).

With no detections at all, ``COCO.loadRes`` cannot load an empty list, so the result set is built as
loadRes would have built it, with no annotations; COCOeval then scores 0 for categories with ground
truth and -1 (pycocotools' "undefined") for the rest.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segpipe.data.categories import CategoryMap
from segpipe.errors import DataError
from segpipe.masks.encode import plain_image_id, prediction_to_coco_results
from segpipe.prediction import Prediction

IOU_TYPES = ("bbox", "segm")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # the first six entries of COCOeval.stats


def load_coco_quietly(annotations: str | Path) -> COCO:
    """``COCO(path)`` without its prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(annotations))


def load_results(coco_gt: COCO, results: list[dict[str, Any]]) -> COCO:
    """``coco_gt.loadRes(results)`` without its prints, also for an empty list (which loadRes rejects).

    ``results`` is modified in place (loadRes adds ids and areas); pass a copy to keep yours.
    """
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes(results)
    res = COCO()
    res.dataset = {
        "info": copy.deepcopy(coco_gt.dataset.get("info", {})),
        "images": list(coco_gt.dataset["images"]),
        "categories": copy.deepcopy(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        res.createIndex()
    return res


class CocoEvaluator:
    """Box / mask AP for instance and detection predictions against a COCO ground truth.

    ``process(predictions, targets=None)``: Predictions in ORIGINAL image pixels, with image ids of
    ``coco_gt``; ``targets`` is accepted for the common evaluator signature and ignored (the ground
    truth is ``coco_gt``). ``result()`` gives, per iou type T in ``iou_types``: ``T_AP, T_AP50, T_AP75,
    T_APs, T_APm, T_APl`` (COCOeval.stats[0:6], in 0..1, -1 where undefined) and
    ``T_AP_per_category``: ``[{"category_id", "name", "AP"}]`` with original ids (area all, 100 dets).
    ``summary()`` returns pycocotools' printed tables, which are otherwise kept off stdout.
    """

    def __init__(
        self,
        coco_gt: COCO | str | Path,
        category_map: CategoryMap,
        iou_types: Sequence[str] = IOU_TYPES,
    ) -> None:
        unknown = [t for t in iou_types if t not in IOU_TYPES]
        if unknown or not iou_types:
            raise ValueError(f"iou_types {list(iou_types)}: choose from {list(IOU_TYPES)}")
        self.coco_gt = coco_gt if isinstance(coco_gt, COCO) else load_coco_quietly(coco_gt)
        self.category_map = category_map
        self.iou_types = tuple(iou_types)
        self.primary_metric = f"{'segm' if 'segm' in self.iou_types else 'bbox'}_AP"
        self.reset()

    def reset(self) -> None:
        self.results: list[dict[str, Any]] = []
        self.image_ids: set[int] = set()
        self.summaries: dict[str, str] = {}
        self.evals: dict[str, COCOeval] = {}

    def process(self, predictions: Iterable[Prediction], targets: Any = None) -> None:
        for pred in predictions:
            image_id = plain_image_id(pred.image_id)
            info = self.coco_gt.imgs.get(image_id)
            if info is None:
                raise DataError(f"image {pred.image_id}: not in the ground-truth annotations")
            for i, inst in enumerate(pred.instances):
                if "segm" in self.iou_types and inst.rle is None:
                    raise ValueError(
                        f"image {image_id}: instance {i} has no mask but iou_types include 'segm' "
                        f"(use iou_types=('bbox',) for detection)"
                    )
                if inst.rle is not None and tuple(inst.rle["size"]) != (info["height"], info["width"]):
                    raise DataError(
                        f"image {image_id}: instance {i} mask is {inst.rle['size'][0]}×{inst.rle['size'][1]}, "
                        f"the image is {info['height']}×{info['width']} (predictions must be in original pixels)"
                    )
            self.image_ids.add(image_id)
            self.results.extend(prediction_to_coco_results(pred, self.category_map))

    def results_for(self, iou_type: str) -> list[dict[str, Any]]:
        """Fresh copies of the accumulated results in the form evaluated for ``iou_type``."""
        drop = "segmentation" if iou_type == "bbox" else "bbox"
        return [{k: v for k, v in r.items() if k != drop} for r in self.results]

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        cat_ids = sorted(self.category_map.ids)
        for iou_type in self.iou_types:
            coco_dt = load_results(self.coco_gt, self.results_for(iou_type))
            evaluator = COCOeval(self.coco_gt, coco_dt, iou_type)
            evaluator.params.imgIds = sorted(self.image_ids)
            evaluator.params.catIds = cat_ids
            with contextlib.redirect_stdout(io.StringIO()):
                evaluator.evaluate()
                evaluator.accumulate()
            text = io.StringIO()
            with contextlib.redirect_stdout(text):
                evaluator.summarize()
            self.summaries[iou_type] = text.getvalue()
            self.evals[iou_type] = evaluator
            for name, value in zip(STAT_NAMES, evaluator.stats[: len(STAT_NAMES)], strict=False):
                out[f"{iou_type}_{name}"] = float(value)
            out[f"{iou_type}_AP_per_category"] = self._per_category(evaluator, cat_ids)
        return out

    def _per_category(self, evaluator: COCOeval, cat_ids: list[int]) -> list[dict[str, Any]]:
        # precision: [iou thresholds, recall thresholds, categories, area ranges, max dets]; area "all"
        # is index 0 and 100 detections the last, as in COCOeval.summarize's AP
        precision = evaluator.eval["precision"]
        rows = []
        for k, cat_id in enumerate(cat_ids):
            p = precision[:, :, k, 0, -1]
            p = p[p > -1]
            rows.append(
                {
                    "category_id": cat_id,
                    "name": self.category_map.names[self.category_map.ids.index(cat_id)],
                    "AP": float(np.mean(p)) if p.size else -1.0,
                }
            )
        return rows

    def pr_curves(self) -> Any:
        """The last ``result()``'s precision–recall data per class (a `segpipe.masks.charts.PrCurves`),
        or None before any ``result()``: precision at COCOeval's 101 recall points, area all, 100
        detections, at IoU 0.5 and averaged over the IoU thresholds."""
        from segpipe.masks.charts import PrCurves

        if not self.evals:
            return None
        cat_ids = sorted(self.category_map.ids)
        names = [self.category_map.names[self.category_map.ids.index(c)] for c in cat_ids]
        first = next(iter(self.evals.values()))
        iou50 = int(np.argmin(np.abs(first.params.iouThrs - 0.5)))
        at50: dict[str, dict[str, np.ndarray]] = {}
        mean: dict[str, dict[str, np.ndarray]] = {}
        for iou_type, ev in self.evals.items():
            precision = ev.eval["precision"]  # [iou, recall, category, area, max dets]
            at50[iou_type] = {n: precision[iou50, :, k, 0, -1].copy() for k, n in enumerate(names)}
            p = precision[:, :, :, 0, -1]
            defined = p > -1
            summed = np.where(defined, p, 0).sum(axis=0)
            count = defined.sum(axis=0)
            averaged = np.divide(summed, count, out=np.full(summed.shape, -1.0), where=count > 0)
            mean[iou_type] = {n: averaged[:, k] for k, n in enumerate(names)}
        images = sorted(self.image_ids)
        anns = self.coco_gt.loadAnns(self.coco_gt.getAnnIds(imgIds=images, iscrowd=False)) if images else []
        counts = {n: sum(1 for a in anns if a["category_id"] == c) for c, n in zip(cat_ids, names, strict=False)}
        return PrCurves(recall=np.asarray(first.params.recThrs), precision50=at50, precision=mean, gt_counts=counts)

    def summary(self) -> str:
        """pycocotools' summary tables of the last ``result()``, one block per iou type."""
        return "\n".join(f"[{t}]\n{self.summaries[t]}" for t in self.iou_types if t in self.summaries)

