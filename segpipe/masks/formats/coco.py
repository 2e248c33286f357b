"""``coco``: a COCO instances dataset in CVAT's "COCO 1.0" layout; ``coco-results``: a COCO results list.

``coco`` writes ``annotations/instances_default.json`` (and ``images/<file_name>`` with
`ExportContext.with_images`)::

    {"info": {...}, "licenses": [],
     "images": [{"id": 1, "file_name": "a/b.jpg", "width": 640, "height": 480}, ...],
     "categories": [{"id": 18, "name": "dog", "supercategory": ""}, ...],      # every model category
     "annotations": [{"id": 1, "image_id": 1, "category_id": 18, "iscrowd": 0, "area": 5120.0,
                      "bbox": [x, y, w, h], "score": 0.93,
                      "segmentation": {"size": [h, w], "counts": "…"} | [[x1, y1, ...], ...] | []}]}

Image ids are the COCO ids the job predicted from when it had a COCO image list, otherwise 1..N in
file order. ``segmentation`` is the exact RLE by default (``segmentation="polygons"`` for outlines);
detection boxes have ``[]``; semantic/binary jobs give one annotation per class region. Every image
is listed, also those without annotations. The file is streamed: images and annotations go to two
scratch files that are joined on close.

``coco-results`` writes ``predictions.json``, the list ``COCO.loadRes`` / ``COCOeval`` take:
``[{"image_id", "category_id", "score", "bbox"?, "segmentation"?}, ...]``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from segpipe.masks import encode
from segpipe.masks.formats.base import PREDICTION_FORMATS, ExportContext, FormatWriter, kept_rows
from segpipe.masks.rows import ExportImage, PredictionRow

_COMPACT = (",", ":")


@PREDICTION_FORMATS.register("coco", description="COCO instances dataset (CVAT 'COCO 1.0'): annotations/instances_default.json",
                  tags=("instance", "detection", "semantic", "binary"))
class CocoWriter(FormatWriter):
    def __init__(self, out: Path, ctx: ExportContext) -> None:
        super().__init__(out, ctx)
        self.target = self.path("annotations", "instances_default.json")
        self._images = self.target.with_name(".images.part").open("w", encoding="utf-8")
        self._annotations = self.target.with_name(".annotations.part").open("w", encoding="utf-8")
        self.image_count = 0
        self.annotation_count = 0
        self._numbered: bool | None = None  # do image keys carry COCO ids? decided on the first image
        # importers (datumaro, so CVAT) look for images/ beside annotations/, even when it is empty
        (self.out / "images").mkdir(exist_ok=True)

    def add(self, image: ExportImage) -> None:
        if self._numbered is None:
            self._numbered = image.key.isdigit()
        self.image_count += 1
        image_id = int(image.key) if self._numbered and image.key.isdigit() else self.image_count
        entry = {"id": image_id, "file_name": image.file_name, "width": image.width, "height": image.height,
                 "license": 0, "flickr_url": "", "coco_url": "", "date_captured": 0}
        self._images.write(("," if self.image_count > 1 else "") + json.dumps(entry, separators=_COMPACT))
        for row in kept_rows(image, self.ctx):
            self.annotation_count += 1
            ann = self._annotation(row, image_id)
            self._annotations.write(("," if self.annotation_count > 1 else "") + json.dumps(ann, separators=_COMPACT))
        if self.ctx.with_images and image.path is not None:
            shutil.copyfile(image.path, self.path("images", image.file_name))

    def _annotation(self, row: PredictionRow, image_id: int) -> dict[str, Any]:
        segmentation: Any = []
        if row.rle is not None:
            area = float(encode.rle_area(row.rle))
            if self.ctx.segmentation == "polygons":
                segmentation = encode.mask_to_polygons(encode.rle_to_mask(row.rle), self.ctx.polygon_tolerance)
            else:
                segmentation = {"size": list(row.rle["size"]), "counts": row.rle["counts"]}
        else:
            area = float(row.bbox[2] * row.bbox[3]) if row.bbox else 0.0
        return {"id": self.annotation_count, "image_id": image_id, "category_id": row.category_id,
                "iscrowd": 0, "area": area, "bbox": row.bbox or [0.0, 0.0, 0.0, 0.0],
                "score": row.score, "segmentation": segmentation}

    def close(self) -> list[Path]:
        self._images.close()
        self._annotations.close()
        categories = [{"id": cid, "name": name, "supercategory": ""} for cid, name in self.ctx.categories]
        head = {"info": {"description": f"segpipe predictions ({self.ctx.model_version})", "version": "1.0"},
                "licenses": [{"id": 0, "name": "", "url": ""}], "categories": categories}
        images_part, annotations_part = self._images.name, self._annotations.name
        with self.target.open("w", encoding="utf-8") as f:
            f.write(json.dumps(head, separators=_COMPACT)[:-1])
            f.write(',"images":[')
            with open(images_part, encoding="utf-8") as part:
                shutil.copyfileobj(part, f)
            f.write('],"annotations":[')
            with open(annotations_part, encoding="utf-8") as part:
                shutil.copyfileobj(part, f)
            f.write("]}\n")
        Path(images_part).unlink()
        Path(annotations_part).unlink()
        self.written.append(self.target)
        return self.written

    def abort(self) -> None:
        for part in (self._images, self._annotations):
            part.close()
            Path(part.name).unlink(missing_ok=True)


def row_to_result(row: PredictionRow, image_id: int | str) -> dict[str, Any]:
    """One row as a COCO result (``COCO.loadRes`` format)."""
    result: dict[str, Any] = {"image_id": image_id, "category_id": row.category_id, "score": row.score}
    if row.bbox is not None:
        result["bbox"] = row.bbox
    if row.rle is not None:
        result["segmentation"] = row.rle
    return result


@PREDICTION_FORMATS.register("coco-results", description="COCO results list (COCO.loadRes / COCOeval): predictions.json",
                  tags=("instance", "detection", "semantic", "binary", "classification"))
class CocoResultsWriter(FormatWriter):
    single_file = "predictions.json"

    def __init__(self, out: Path, ctx: ExportContext) -> None:
        super().__init__(out, ctx)
        self.target = self.path(self.single_file)
        self._part = self.target.with_name(self.single_file + ".part")
        self._file = self._part.open("w", encoding="utf-8")
        self._file.write("[")
        self.count = 0

    def add(self, image: ExportImage) -> None:
        for row in kept_rows(image, self.ctx):
            self._file.write(",\n" if self.count else "\n")
            self._file.write(json.dumps(row_to_result(row, image.coco_id), separators=_COMPACT))
            self.count += 1

    def close(self) -> list[Path]:
        self._file.write("\n]\n")
        self._file.close()
        self._part.replace(self.target)
        self.written.append(self.target)
        return self.written

    def abort(self) -> None:
        self._file.close()
        self._part.unlink(missing_ok=True)
