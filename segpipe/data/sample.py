"""The Sample contract: the one shape every source, converter, transform, adapter and evaluator speaks.

Fields (H, W = image height and width in pixels):

- ``image``:     H×W×3 ``uint8`` RGB (grayscale is replicated, alpha dropped, 16-bit scaled to 8-bit).
- ``image_id``:  the COCO image id (``int``) or, for folder sources, the file stem (``str``).
- ``masks``:     N×H×W ``uint8`` in {0, 1}, one per instance (instance task; empty N=0 otherwise).
- ``boxes``:     N×4 ``float32`` xyxy in pixels, x2/y2 exclusive (instance and detection).
- ``labels``:    N ``int64`` contiguous labels, 1..K (0 is background) for instance/detection.
- ``label_map``: H×W ``uint8`` (semantic: 0 = background, 1..K classes; binary: 0/1), ``ignore_index``
  (255 by default) marks pixels not to learn from (crowd regions, padding). None for other tasks.
- ``class_id``:  ``int`` 0..K-1 for classification, else None.
- ``meta``:      free-form facts (file name, original size, annotation ids, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

ImageId = int | str


def empty_masks(height: int, width: int) -> np.ndarray:
    return np.zeros((0, height, width), dtype=np.uint8)


def empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float32)


def empty_labels() -> np.ndarray:
    return np.zeros((0,), dtype=np.int64)


@dataclass
class Sample:
    image: np.ndarray
    image_id: ImageId
    masks: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.uint8))
    boxes: np.ndarray = field(default_factory=empty_boxes)
    labels: np.ndarray = field(default_factory=empty_labels)
    label_map: np.ndarray | None = None
    class_id: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.masks.shape == (0, 0, 0):
            self.masks = empty_masks(*self.image.shape[:2])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the image."""
        return int(self.image.shape[0]), int(self.image.shape[1])

    def check(self) -> None:
        """Raise ValueError if the fields break the contract (used in tests and after transforms)."""
        h, w = self.size
        if self.image.dtype != np.uint8 or self.image.ndim != 3 or self.image.shape[2] != 3:
            raise ValueError(f"image {self.image_id}: image must be H×W×3 uint8, got {self.image.shape} {self.image.dtype}")
        n = len(self.labels)
        if self.masks.dtype != np.uint8 or self.masks.ndim != 3 or (len(self.masks) and self.masks.shape[1:] != (h, w)):
            raise ValueError(f"image {self.image_id}: masks must be N×{h}×{w} uint8, got {self.masks.shape} {self.masks.dtype}")
        if len(self.masks) not in (0, n):
            raise ValueError(f"image {self.image_id}: {len(self.masks)} masks for {n} labels")
        if self.boxes.dtype != np.float32 or self.boxes.shape != (n, 4):
            raise ValueError(f"image {self.image_id}: boxes must be {n}×4 float32, got {self.boxes.shape} {self.boxes.dtype}")
        if self.labels.dtype != np.int64 or self.labels.ndim != 1:
            raise ValueError(f"image {self.image_id}: labels must be int64 of shape (N,), "
                             f"got {self.labels.shape} {self.labels.dtype}")
        if self.label_map is not None and (self.label_map.dtype != np.uint8 or self.label_map.shape != (h, w)):
            raise ValueError(f"image {self.image_id}: label_map must be {h}×{w} uint8, "
                             f"got {self.label_map.shape} {self.label_map.dtype}")
