"""Semantic and binary segmentation metrics from one bincount confusion matrix.

The matrix ``cm`` is K×K int64 with rows = target class and columns = predicted class, accumulated
over every processed pixel whose target is not ``ignore_index``. From it, per class c:
``IoU = TP / (TP + FP + FN)`` and ``Dice = 2 TP / (2 TP + FP + FN)``.

Absent classes: a class that appears neither in the targets nor in the predictions has no IoU or Dice
(0 / 0). Its per-class entry is None and it is left out of ``miou`` / ``mdice``; a class that appears
in either counts (so predicting a class that is not there pulls the mean down). Means are over the
classes that appear, background included, which is how mmsegmentation and torchmetrics report mIoU.
Nothing is NaN, so results go into JSON (and PostgreSQL JSONB) unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from segpipe.data.categories import CategoryMap
from segpipe.data.sample import Sample
from segpipe.errors import DataError
from segpipe.prediction import Prediction
from segpipe.vocabulary import IGNORE_INDEX


def confusion_matrix(
    target: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """K×K int64 counts, rows = target, columns = prediction, via one ``np.bincount``.

    ``target`` and ``pred`` are integer arrays of the same shape with values in 0..K-1; entries whose
    target equals ``ignore_index`` are skipped. Out-of-range values raise ValueError.
    """
    target = np.asarray(target).reshape(-1)
    pred = np.asarray(pred).reshape(-1)
    if target.shape != pred.shape:
        raise ValueError(f"target has {target.size} entries, prediction {pred.size}")
    if ignore_index is not None:
        keep = target != ignore_index
        target, pred = target[keep], pred[keep]
    for name, values in (("target", target), ("prediction", pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            bad = int(values.max()) if values.max() >= num_classes else int(values.min())
            raise ValueError(f"{name} holds class {bad}, outside 0..{num_classes - 1}")
    index = target.astype(np.int64) * num_classes + pred.astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_dice_from_confusion(cm: np.ndarray) -> tuple[list[float | None], list[float | None]]:
    """Per-class IoU and Dice from a K×K confusion matrix; None where the class appears nowhere."""
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    union = tp + fp + fn
    iou = [float(t / u) if u > 0 else None for t, u in zip(tp, union, strict=False)]
    dice = [float(2 * t / (u + t)) if u > 0 else None for t, u in zip(tp, union, strict=False)]
    return iou, dice


def _mean(values: Sequence[float | None]) -> float:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else 0.0


def as_numpy(x: Any) -> np.ndarray:
    """numpy view of an array-like or a (possibly CUDA) torch tensor, without importing torch."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _target_maps(targets: Any, count: int) -> list[np.ndarray]:
    """Accepts a list of Samples (their ``label_map``), a list of H×W arrays or a B×H×W array/tensor."""
    if isinstance(targets, Sequence) and targets and isinstance(targets[0], Sample):
        maps = []
        for sample in targets:
            if sample.label_map is None:
                raise DataError(f"image {sample.image_id}: sample has no label_map to evaluate against")
            maps.append(sample.label_map)
    else:
        maps = list(as_numpy(targets)) if not isinstance(targets, Sequence) else [as_numpy(t) for t in targets]
    if len(maps) != count:
        raise ValueError(f"{count} predictions but {len(maps)} targets")
    return maps


class SemanticEvaluator:
    """Pixel metrics for label maps: 0 = background, 1..K-1 classes, ``ignore_index`` not counted.

    ``process(predictions, targets)``: ``predictions`` is a list of Predictions with ``label_map``
    (H×W), ``targets`` either the matching list of Samples (their ``label_map``), a list of H×W arrays,
    or the batch's B×H×W ``label_maps`` array/tensor, in the same order and the same size as the
    predictions. ``result()`` gives ``miou``, ``mdice``, ``pixel_accuracy``, ``iou_per_class``,
    ``dice_per_class`` (None for classes absent everywhere), ``class_names``, ``confusion_matrix``
    (K×K nested list, rows = target) and ``num_images``.
    """

    primary_metric = "miou"

    def __init__(
        self, category_map: CategoryMap | None = None, num_classes: int | None = None, ignore_index: int = IGNORE_INDEX
    ) -> None:
        if num_classes is None:
            if category_map is None:
                raise ValueError("give a category_map or num_classes")
            num_classes = category_map.num_labels
        self.num_classes = int(num_classes)
        if category_map is not None and category_map.num_labels == self.num_classes:
            self.class_names = category_map.label_names
        else:
            self.class_names = ["background"] + [f"class_{i}" for i in range(1, self.num_classes)]
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.cm = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.num_images = 0

    def process(self, predictions: Sequence[Prediction], targets: Any) -> None:
        for pred, target in zip(predictions, _target_maps(targets, len(predictions)), strict=True):
            if pred.label_map is None:
                raise ValueError(f"image {pred.image_id}: prediction has no label_map")
            self.add(pred.label_map, target, image_id=pred.image_id)

    def add(self, pred_map: np.ndarray, target_map: np.ndarray, image_id: Any = None) -> None:
        """Accumulate one H×W predicted map against its H×W target map."""
        pred_map, target_map = as_numpy(pred_map), as_numpy(target_map)
        if pred_map.shape != target_map.shape:
            raise ValueError(
                f"image {image_id}: prediction is {'×'.join(map(str, pred_map.shape))}, "
                f"target {'×'.join(map(str, target_map.shape))}"
            )
        try:
            self.cm += confusion_matrix(target_map, pred_map, self.num_classes, self.ignore_index)
        except ValueError as e:
            raise DataError(f"image {image_id}: {e}") from None
        self.num_images += 1

    def result(self) -> dict[str, Any]:
        iou, dice = iou_dice_from_confusion(self.cm)
        total = int(self.cm.sum())
        return {
            "miou": _mean(iou),
            "mdice": _mean(dice),
            "pixel_accuracy": float(np.trace(self.cm) / total) if total else 0.0,
            "iou_per_class": iou,
            "dice_per_class": dice,
            "class_names": list(self.class_names),
            "confusion_matrix": self.cm.tolist(),
            "num_images": self.num_images,
        }


class BinaryEvaluator(SemanticEvaluator):
    """Foreground / background maps (0/1, ``ignore_index`` skipped). Adds to SemanticEvaluator's keys:
    ``iou`` and ``dice`` of the foreground class and ``pixel_error`` = 1 - pixel accuracy.

    When neither targets nor predictions hold any foreground, ``iou`` and ``dice`` are 1.0: the model
    agreed perfectly that there is nothing to find.
    """

    primary_metric = "iou"

    def __init__(self, category_map: CategoryMap | None = None, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__(category_map, num_classes=2, ignore_index=ignore_index)
        if category_map is not None and category_map.num_categories == 1:
            self.class_names = ["background", category_map.names[0]]
        else:
            self.class_names = ["background", "foreground"]

    def result(self) -> dict[str, Any]:
        out = super().result()
        iou, dice = out["iou_per_class"][1], out["dice_per_class"][1]
        out["iou"] = 1.0 if iou is None else iou
        out["dice"] = 1.0 if dice is None else dice
        out["pixel_error"] = 1.0 - out["pixel_accuracy"]
        return out
