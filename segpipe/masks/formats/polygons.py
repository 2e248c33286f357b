"""``polygons``: one JSON per image, the one polygon schema of segpipe (files, ``segpipe masks``, the API)::

    polygons/<name>.json = {"image_id": 7 | "a/b", "file_name": "a/b.jpg", "height": 480, "width": 640,
                            "objects": [{"instance": 0, "category_id": 18, "category_name": "dog",
                                         "score": 0.93, "bbox": [x, y, w, h],
                                         "polygons": [[x1, y1, x2, y2, ...], ...]}]}

Polygons are flat COCO polygons in pixels (pixel centres at +0.5), outer outlines only (holes come
back filled). A detection box becomes its rectangle. An image with nothing found has ``objects: []``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from segpipe.masks import encode
from segpipe.masks.formats.base import PREDICTION_FORMATS, FormatWriter, kept_rows
from segpipe.masks.rows import ExportImage, PredictionRow


def row_polygons(row: PredictionRow, tolerance: float = 0.25) -> list[list[float]]:
    if row.rle is not None:
        return encode.mask_to_polygons(encode.rle_to_mask(row.rle), tolerance)
    if row.bbox is not None:
        x, y, w, h = row.bbox
        return [[x, y, x + w, y, x + w, y + h, x, y + h]]
    return []


def objects(rows: Sequence[PredictionRow], tolerance: float = 0.25) -> list[dict[str, Any]]:
    """Per row: ``{instance, category_id, category_name, score, bbox, polygons}``."""
    return [
        {"instance": r.instance, "category_id": r.category_id, "category_name": r.category_name,
         "score": r.score, "bbox": r.bbox, "polygons": row_polygons(r, tolerance)}
        for r in rows
    ]


def document(image: ExportImage, rows: Sequence[PredictionRow], tolerance: float = 0.25) -> dict[str, Any]:
    return {"image_id": image.coco_id, "file_name": image.file_name, "height": image.height, "width": image.width,
            "objects": objects(rows, tolerance)}


@PREDICTION_FORMATS.register("polygons", description="polygons JSON per image (image size, category id and name, score)",
                  tags=("instance", "detection", "semantic", "binary"))
class PolygonsWriter(FormatWriter):
    per_image = ("polygons",)

    def add(self, image: ExportImage) -> None:
        target = self.path("polygons", image.stem + ".json")
        target.write_text(json.dumps(document(image, kept_rows(image, self.ctx), self.ctx.polygon_tolerance)))
        self.written.append(target)
