"""A dataset on its way into a snapshot: COCO categories, images with their bytes, annotations.

Readers of every source format produce a `Draft`; `segpipe.snapshots.store` hashes and writes it. The
COCO it becomes is normalised so that equal data hashes equal whatever tool it came from: image ids
1..N in file-name order, annotation ids 1..M in that order, every mask as compressed RLE with
``iscrowd`` 0 (a CVAT brush mask is an object, not a crowd region), boxes ``[x, y, w, h]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from segpipe.errors import DataError


@dataclass
class DraftImage:
    file_name: str  # relative POSIX path inside the snapshot's images/ folder
    data: bytes
    width: int
    height: int


@dataclass
class DraftAnnotation:
    file_name: str  # the image it belongs to
    category: str  # label name
    bbox: list[float]  # x, y, w, h in pixels
    segmentation: dict[str, Any] | list[list[float]] | None = None  # compressed RLE or polygons; None: box only
    area: float | None = None


@dataclass
class Draft:
    categories: list[str]
    # the COCO ids of ``categories`` (a model's own, so that what it is evaluated and fine-tuned on keeps its
    # category ids); None: 1..N in order
    category_ids: list[int] | None = None
    images: dict[str, DraftImage] = field(default_factory=dict)
    annotations: list[DraftAnnotation] = field(default_factory=list)

    def add_mask(self, file_name: str, category: str, mask: np.ndarray) -> None:
        """One object from an H×W boolean mask (an empty mask is dropped: it marks nothing)."""
        if not mask.any():
            return
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
        segmentation = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
        self.annotations.append(DraftAnnotation(file_name, category, [x, y, w, h], segmentation,
                                                float(mask_utils.area(rle))))

    def add_polygon(self, file_name: str, category: str, points: list[float], height: int, width: int,
                    where: str) -> None:
        """One object from a polygon ``[x1, y1, x2, y2, …]`` in pixels (kept as a polygon)."""
        if len(points) < 6:
            raise DataError(f"{where}: a polygon needs at least 3 points, has {len(points) // 2}")
        rle = mask_utils.merge(mask_utils.frPyObjects([points], height, width))
        x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
        self.annotations.append(DraftAnnotation(file_name, category, [x, y, w, h], [list(points)],
                                                float(mask_utils.area(rle))))

    def to_coco(self) -> dict[str, Any]:
        """The normalised COCO dictionary (see the module docstring)."""
        unknown = sorted({a.category for a in self.annotations} - set(self.categories))
        if unknown:
            raise DataError(f"annotations use labels {unknown} that the dataset's label list {self.categories} lacks")
        missing = sorted({a.file_name for a in self.annotations} - set(self.images))
        if missing:
            raise DataError(f"annotations refer to images {missing[:5]} that the source does not hold")
        cat_ids = self._category_ids()
        names = sorted(self.images)
        image_ids = {name: i + 1 for i, name in enumerate(names)}
        order = sorted(range(len(self.annotations)),
                       key=lambda k: (image_ids[self.annotations[k].file_name], k))
        annotations = []
        for ann_id, k in enumerate(order, start=1):
            a = self.annotations[k]
            entry: dict[str, Any] = {"id": ann_id, "image_id": image_ids[a.file_name],
                                     "category_id": cat_ids[a.category], "bbox": [round(v, 2) for v in a.bbox],
                                     "area": a.area if a.area is not None else a.bbox[2] * a.bbox[3], "iscrowd": 0}
            if a.segmentation is not None:
                entry["segmentation"] = a.segmentation
            annotations.append(entry)
        return {
            "images": [{"id": image_ids[n], "file_name": n, "width": self.images[n].width,
                        "height": self.images[n].height} for n in names],
            "categories": [{"id": cat_ids[c], "name": c, "supercategory": ""} for c in self.categories],
            "annotations": annotations,
        }

    def _category_ids(self) -> dict[str, int]:
        if self.category_ids is None:
            return {name: i + 1 for i, name in enumerate(self.categories)}
        ids = [int(i) for i in self.category_ids]
        if len(ids) != len(self.categories) or len(set(ids)) != len(ids) or min(ids, default=1) < 1:
            raise DataError(f"category ids {ids} do not fit the labels {self.categories}: one distinct positive id "
                            "per label")
        return dict(zip(self.categories, ids, strict=True))
