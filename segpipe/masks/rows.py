"""The one row type every export reads: a prediction's instances as the store keeps them.

A predict job's stored predictions and a prediction still in memory (``segpipe predict`` on a
folder) both become `ExportImage`\\ s — one image, its size, its `MaskRow`\\ s — and every export
format (``segpipe.masks.formats``) reads only those. So a file exported from a running model and one
exported later from the store are byte for byte the same.

Row contract (one per instance; per class present for semantic/binary label maps; per ranked class
for classification):
- ``category_id``: the dataset's ORIGINAL id (CategoryMap applied in reverse), ``category_name`` its name;
- ``score``: confidence (1.0 for label-map regions, which carry none);
- ``bbox``: COCO ``[x, y, w, h]`` in pixels, or None (classification);
- ``rle``: compressed COCO RLE ``{"size": [h, w], "counts": str}``, or None (detection, classification).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segpipe.data.categories import CategoryMap
from segpipe.masks import encode
from segpipe.prediction import Prediction
from segpipe.task_kinds import CLASS_TASKS
from segpipe.vocabulary import SCORE_FLOOR

#: The one default score threshold: predict jobs, ``segpipe predict``, ``segpipe masks``, the export API
#: and overlays keep instances scoring at least this much unless told otherwise.
DEFAULT_SCORE_THRESHOLD = 0.5
#: What a predict job stores: every instance scoring at least this much. The threshold above is a view
#: applied when exporting, so ``segpipe masks --score-threshold 0.1`` finds what the job saw.
DEFAULT_SCORE_FLOOR = SCORE_FLOOR


@dataclass(frozen=True, slots=True)
class PredictionRow:
    """One stored instance. ``rle`` is ``{"size": [h, w], "counts": str}`` or None (boxes only).

    ``job_id`` is "" for predictions that were never stored."""

    job_id: str
    image_key: str
    instance: int
    category_id: int | None
    category_name: str | None
    score: float | None
    bbox: list[float] | None
    rle: dict[str, Any] | None
    height: int
    width: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MaskRow = PredictionRow  # the name the prediction formats use


@dataclass
class ExportImage:
    """One image as the exports see it: its key (str image id), the file name a tool will match it by
    (relative to the image folder, with suffix), its size, and its rows ordered by instance — possibly
    none: an image with nothing found is still exported. ``load`` reads the RGB image when a format
    needs the pixels (overlays, ``coco`` with images). ``task_data``: more fields for formats that keep
    data beside each image (Label Studio's ``data``), e.g. its rank in "what to label next"."""

    key: str
    file_name: str
    height: int
    width: int
    rows: list[PredictionRow] = field(default_factory=list)
    load: Callable[[], np.ndarray] | None = None
    path: Path | None = None
    task_data: dict[str, Any] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        """The name output files get: the file name without its suffix (nested folders kept)."""
        return Path(self.file_name).with_suffix("").as_posix()

    @property
    def coco_id(self) -> int | str:
        return int(self.key) if self.key.isdigit() else self.key


def prediction_rows(pred: Prediction, category_map: CategoryMap, topk: int = 1) -> list[dict[str, Any]]:
    """Rows for `PredictionStore.write_image` (dicts with the `PredictionRow` fields but the keys):
    one per instance, per class present for label maps, and the ``topk`` best classes (best first)
    for a classification."""
    if pred.task in CLASS_TASKS or (pred.class_id is not None and not pred.instances and pred.label_map is None):
        return [
            {"instance": r["rank"] - 1, "category_id": r["category_id"], "category_name": r["category_name"],
             "score": r["score"] if r["score"] is not None else 1.0, "bbox": None, "rle": None}
            for r in encode.topk_rows(pred, category_map, topk)
        ]
    rows = []
    for i, result in enumerate(encode.prediction_to_coco_results(pred, category_map)):
        label = category_map.to_label(result["category_id"])
        rows.append(
            {
                "instance": i,
                "category_id": result["category_id"],
                "category_name": category_map.name_of_label(label),
                "score": result.get("score"),
                "bbox": result.get("bbox"),
                "rle": result.get("segmentation"),
            }
        )
    return rows


def export_image(
    pred: Prediction, category_map: CategoryMap, file_name: str, *, topk: int = 1,
    image: np.ndarray | None = None, path: Path | None = None,
) -> ExportImage:
    """An in-memory prediction as the exports see it (the same rows the store would hold)."""
    key = str(encode.plain_image_id(pred.image_id))
    rows = [
        PredictionRow("", key, r["instance"], r["category_id"], r["category_name"], r["score"], r["bbox"], r["rle"],
                      pred.height, pred.width)
        for r in prediction_rows(pred, category_map, topk)
    ]
    load = (lambda: image) if image is not None else None
    return ExportImage(key, file_name, pred.height, pred.width, rows, load, path)


def categories_of(category_map: CategoryMap) -> list[tuple[int, str]]:
    """(original id, name) of every category a model knows, in label order: what an export lists even
    when no image shows one."""
    return list(zip(category_map.ids, category_map.names, strict=True))
