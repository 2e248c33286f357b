"""Duplicate suppression for pre-labels: one object, one instance, whatever class the model also guessed.

A detector's own NMS works per class and on boxes, so an object can come back as several overlapping
masks (slightly shifted boxes whose masks are the same blob) or as two classes. For an annotator each
duplicate is a deletion. `suppress_duplicates` keeps, greedily by score, an instance only when its
mask (or, for boxes without masks, its box) overlaps every instance already kept by less than ``iou``
(same class) or ``cross_class_iou`` (another class: the same object under two names). Rows without a
score (label-map regions, classification) pass unchanged.

The defaults keep mask AP where it was (``bench/prelabel_duplicates.py``, docs/pre-labels.md): a
same-class threshold of 0.5 removes nearly every duplicate but also the accurate mask of an object whose
higher-scoring neighbour merged it with the next one; 0.7 leaves AP unchanged, and across classes 0.5
costs nothing.

Mask IoU is pycocotools' on the compressed RLEs, so nothing is decoded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils

from segpipe.masks.rows import PredictionRow

DEFAULT_DUPLICATE_IOU = 0.7  # same class
CROSS_CLASS_IOU = 0.5  # another class (never above the same-class threshold)


def _iou_matrix(rows: Sequence[PredictionRow]) -> np.ndarray:
    n = len(rows)
    if all(r.rle is not None for r in rows):
        rles = [{"size": r.rle["size"], "counts": r.rle["counts"].encode() if isinstance(r.rle["counts"], str)
                 else r.rle["counts"]} for r in rows if r.rle is not None]
        return np.asarray(mask_utils.iou(rles, rles, [0] * n), dtype=np.float64).reshape(n, n)
    boxes = [list(r.bbox) if r.bbox is not None else [0.0, 0.0, 0.0, 0.0] for r in rows]
    return np.asarray(mask_utils.iou(boxes, boxes, [0] * n), dtype=np.float64).reshape(n, n)


def suppress_duplicates(rows: Sequence[PredictionRow], iou: float = DEFAULT_DUPLICATE_IOU,
                        cross_class_iou: float = CROSS_CLASS_IOU) -> list[PredictionRow]:
    """``rows`` without the lower-scoring instance of every pair overlapping by ``iou`` or more (same class)
    or ``min(cross_class_iou, iou)`` or more (different classes), in their original order."""
    across = min(cross_class_iou, iou)
    scored = [i for i, r in enumerate(rows) if r.score is not None and (r.rle is not None or r.bbox is not None)]
    if len(scored) < 2:
        return list(rows)
    candidates = [rows[i] for i in scored]
    overlaps = _iou_matrix(candidates)
    order = sorted(range(len(candidates)), key=lambda k: -(candidates[k].score or 0.0))
    kept: list[int] = []
    for k in order:
        category = candidates[k].category_id
        if all(overlaps[k, j] < (iou if candidates[j].category_id == category else across) for j in kept):
            kept.append(k)
    dropped = {scored[k] for k in range(len(candidates))} - {scored[k] for k in kept}
    return [r for i, r in enumerate(rows) if i not in dropped]
