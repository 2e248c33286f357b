"""Duplicate suppression for pre-labels: one object, one instance, whatever class the model also guessed.

A detector's own NMS works per class and on boxes, so an object can come back as several overlapping
masks (slightly shifted boxes whose masks are the same blob) or as two classes. For an annotator each
duplicate is a deletion. `suppress_duplicates` keeps, greedily by score, an instance only when its
mask (or, for boxes without masks, its box) overlaps every instance already kept by less than
``iou`` — across classes. Rows without a score (label-map regions, classification) pass unchanged.

Mask IoU is pycocotools' on the compressed RLEs, so nothing is decoded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils

from segpipe.masks.rows import PredictionRow

DEFAULT_DUPLICATE_IOU = 0.5


def _iou_matrix(rows: Sequence[PredictionRow]) -> np.ndarray:
    n = len(rows)
    if all(r.rle is not None for r in rows):
        rles = [{"size": r.rle["size"], "counts": r.rle["counts"].encode() if isinstance(r.rle["counts"], str)
                 else r.rle["counts"]} for r in rows if r.rle is not None]
        return np.asarray(mask_utils.iou(rles, rles, [0] * n), dtype=np.float64).reshape(n, n)
    boxes = [list(r.bbox) if r.bbox is not None else [0.0, 0.0, 0.0, 0.0] for r in rows]
    return np.asarray(mask_utils.iou(boxes, boxes, [0] * n), dtype=np.float64).reshape(n, n)


def suppress_duplicates(rows: Sequence[PredictionRow], iou: float = DEFAULT_DUPLICATE_IOU) -> list[PredictionRow]:
    """``rows`` without the lower-scoring instance of every pair overlapping by ``iou`` or more (any class),
    in their original order."""
    scored = [i for i, r in enumerate(rows) if r.score is not None and (r.rle is not None or r.bbox is not None)]
    if len(scored) < 2:
        return list(rows)
    candidates = [rows[i] for i in scored]
    overlaps = _iou_matrix(candidates)
    order = sorted(range(len(candidates)), key=lambda k: -(candidates[k].score or 0.0))
    kept: list[int] = []
    for k in order:
        if all(overlaps[k, j] < iou for j in kept):
            kept.append(k)
    dropped = {scored[k] for k in range(len(candidates))} - {scored[k] for k in kept}
    return [r for i, r in enumerate(rows) if i not in dropped]
