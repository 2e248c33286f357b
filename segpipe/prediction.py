"""The Prediction contract: what a model says about one image, in original-image pixels.

One kind per task:
- classification: ``class_id`` (contiguous index) and ``scores`` (K softmax probabilities);
- semantic / binary: ``label_map`` H×W uint8 (same numbering as Sample.label_map) and optionally
  ``scores`` as a per-class probability map is *not* kept (too large): only the arg-max;
- instance / detection: ``instances``, each a box (xyxy float pixels), contiguous label, score and,
  for instance, a mask as compressed COCO RLE (``{"size": [h, w], "counts": str}``).

Every kind may carry ``uncertainty`` in [0, 1] (`segpipe.models.uncertainty`): how much labelling this
image would teach the model, the number "what to label next" ranks by.

Labels are contiguous; `segpipe.data.categories.CategoryMap` turns them back into dataset ids on
export (done once, in `segpipe.masks.encode`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segpipe.data.sample import ImageId


@dataclass
class Instance:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in original-image pixels
    label: int  # contiguous, 1..K
    score: float
    rle: dict[str, Any] | None = None  # compressed COCO RLE, counts as str; None for detection


@dataclass
class Prediction:
    image_id: ImageId
    task: str
    height: int
    width: int
    class_id: int | None = None
    scores: np.ndarray | None = None  # classification: (K,) float32 probabilities
    label_map: np.ndarray | None = None  # semantic / binary: (H, W) uint8
    instances: list[Instance] = field(default_factory=list)
    uncertainty: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
