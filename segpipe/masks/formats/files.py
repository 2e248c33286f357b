"""``overlay`` (pictures to look at) and ``csv`` (a table of classes), from the same rows as every format.

- ``overlay``: ``overlays/<name>.png``, the prediction drawn over the image (needs the image pixels:
  available to ``segpipe predict``, and to a predict job's exports while its image folder exists);
- ``csv``: ``predictions.csv``, one line per row: ``file, image_id, rank, category_id, category_name,
  score`` (classification: the top-k classes, rank 1 best; other tasks: one line per instance/region).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segpipe.data.categories import CategoryMap
from segpipe.errors import ConfigError
from segpipe.masks.formats.base import PREDICTION_FORMATS, TASKS, ExportContext, FormatWriter, kept_rows
from segpipe.masks.rows import ExportImage, PredictionRow
from segpipe.prediction import Instance, Prediction
from segpipe.task_kinds import traits


def rows_to_prediction(image: ExportImage, rows: Sequence[PredictionRow], ctx: ExportContext) -> tuple[Prediction, CategoryMap]:
    """Rows back as a `Prediction` (contiguous labels) with the category map that numbers them, for drawing."""
    ids = tuple(cid for cid, _ in ctx.categories)
    kind = traits(ctx.task)
    cmap = CategoryMap(ids, tuple(name for _, name in ctx.categories), offset=kind.label_offset)
    pred = Prediction(image.key, ctx.task, image.height, image.width)
    if kind.target == "class_id":
        if rows:
            pred.class_id = cmap.to_label(int(rows[0].category_id or 0))
        return pred, cmap
    if kind.dense:
        from segpipe.masks.encode import rle_to_mask

        label_map = np.zeros((image.height, image.width), np.uint8)
        for row in rows:
            if row.rle is not None:
                label_map[rle_to_mask(row.rle).astype(bool)] = cmap.to_label(int(row.category_id or 0))
        pred.label_map = label_map
        return pred, cmap
    for row in rows:
        x, y, w, h = row.bbox or (0.0, 0.0, 0.0, 0.0)
        pred.instances.append(Instance((x, y, x + w, y + h), cmap.to_label(int(row.category_id or 0)),
                                       float(row.score or 0.0), row.rle))
    return pred, cmap


@PREDICTION_FORMATS.register("overlay", description="the prediction drawn over each image: overlays/<name>.png", tags=TASKS)
class OverlayWriter(FormatWriter):
    per_image = ("overlays",)

    def add(self, image: ExportImage) -> None:
        from segpipe.masks import render

        if image.load is None:
            raise ConfigError(f"image {image.key} ({image.file_name}): overlays need the image, which is not available")
        pred, cmap = rows_to_prediction(image, kept_rows(image, self.ctx), self.ctx)
        self.written.append(render.save_overlay(image.load(), pred, cmap, self.path("overlays", image.stem + ".png")))


@PREDICTION_FORMATS.register("csv", description="table of classes/objects per image: predictions.csv", tags=TASKS)
class CsvWriter(FormatWriter):
    single_file = "predictions.csv"
    FIELDS = ("file", "image_id", "rank", "category_id", "category_name", "score")

    def __init__(self, out: Path, ctx: ExportContext) -> None:
        super().__init__(out, ctx)
        self.target = self.path(self.single_file)
        self._file = self.target.open("w", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._file, fieldnames=self.FIELDS)
        self._csv.writeheader()

    def add(self, image: ExportImage) -> None:
        for rank, row in enumerate(kept_rows(image, self.ctx), start=1):
            self._csv.writerow({"file": image.stem, "image_id": image.coco_id, "rank": rank,
                                "category_id": row.category_id, "category_name": row.category_name,
                                "score": row.score})

    def close(self) -> list[Path]:
        self._file.close()
        self.written.append(self.target)
        return self.written

    def abort(self) -> None:
        self._file.close()
