"""``png``: per image a class map, and for instance jobs an instance map with a sidecar JSON.

Pixel values (the same from ``segpipe predict``, a predict job, ``segpipe masks`` and the API):

- ``masks/<name>.png`` — the class map: pixel = the ORIGINAL category id of what covers it, 0 = nothing
  (background). A palette PNG (VOC colours, so it is viewable) when every id is below 256, else 16-bit
  grayscale. Binary jobs use the same rule (foreground = its category id).
- ``instances/<name>.png`` (instance jobs) — pixel = instance number + 1 (the sidecar's ``value``), 0 = none;
  8-bit up to 255 instances, else 16-bit. ``instances/<name>.json`` maps each value to its instance:
  ``{"file_name", "height", "width", "overlaps": "higher score on top",
  "instances": [{"value", "instance", "category_id", "category_name", "score", "pixels", "visible_pixels"}]}``.

Where instances overlap, a pixel goes to the higher-scoring one (ties: the later instance), in both
maps; ``visible_pixels`` < ``pixels`` tells that an instance lost pixels that way. Images with
nothing found get an all-zero map.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from segpipe.masks import encode
from segpipe.masks.formats.base import PREDICTION_FORMATS, FormatWriter, kept_rows
from segpipe.masks.rows import ExportImage, PredictionRow
from segpipe.task_kinds import traits


def painting_order(rows: Sequence[PredictionRow]) -> list[PredictionRow]:
    """Rows with masks, lowest score first: painting in this order leaves the best one on top."""
    with_masks = [r for r in rows if r.rle is not None]
    return sorted(with_masks, key=lambda r: r.score if r.score is not None else 0.0)  # stable: ties keep order


def maps(rows: Sequence[PredictionRow], height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(class map, instance map), each mask decoded once. Class map: original category ids (uint8, or
    uint16 when an id exceeds 255); instance map: instance number + 1 (uint8 up to 255 instances, else
    uint16); 0 = none in both."""
    ids = [int(r.category_id or 0) for r in rows]
    top = max((r.instance for r in rows), default=-1) + 1
    classes = np.zeros((height, width), np.uint16 if ids and max(ids) > 255 else np.uint8)
    instances = np.zeros((height, width), np.uint16 if top > 255 else np.uint8)
    for row in painting_order(rows):
        if row.rle is None:
            continue
        mask = encode.rle_to_mask(row.rle).astype(bool)
        classes[mask] = int(row.category_id or 0)
        instances[mask] = row.instance + 1
    return classes, instances


def class_map(rows: Sequence[PredictionRow], height: int, width: int) -> np.ndarray:
    return maps(rows, height, width)[0]


def instance_map(rows: Sequence[PredictionRow], height: int, width: int) -> np.ndarray:
    return maps(rows, height, width)[1]


def png_bytes(values: np.ndarray, palette: bool = True) -> bytes:
    """A map as PNG bytes: a palette image (indices = values) for uint8 with ``palette``, else grayscale."""
    if values.dtype == np.uint8 and palette:
        im = Image.fromarray(values)
        im.putpalette(encode.voc_palette().reshape(-1).tolist())
        buffer = io.BytesIO()
        im.save(buffer, format="PNG")
        return buffer.getvalue()
    ok, encoded = cv2.imencode(".png", values)
    if not ok:
        raise ValueError("PNG encoding failed")
    return encoded.tobytes()


def class_map_png(rows: Sequence[PredictionRow], height: int, width: int) -> bytes:
    return png_bytes(class_map(rows, height, width))


def instance_sidecar(image: ExportImage, rows: Sequence[PredictionRow], id_map: np.ndarray) -> dict:
    visible = np.bincount(id_map.reshape(-1), minlength=max((r.instance for r in rows), default=-1) + 2)
    return {
        "file_name": image.file_name, "height": image.height, "width": image.width,
        "overlaps": "higher score on top",
        "instances": [
            {"value": r.instance + 1, "instance": r.instance, "category_id": r.category_id,
             "category_name": r.category_name, "score": r.score,
             "pixels": encode.rle_area(r.rle) if r.rle else 0, "visible_pixels": int(visible[r.instance + 1])}
            for r in rows
        ],
    }


@PREDICTION_FORMATS.register("png", description="class-id PNG per image (+ instance map and sidecar JSON for instance jobs)",
                  tags=("instance", "semantic", "binary"))
class PngWriter(FormatWriter):
    per_image = ("masks", "instances")

    @classmethod
    def folders(cls, task: str) -> tuple[str, ...]:
        return cls.per_image if traits(task).instance_masks else ("masks",)

    def add(self, image: ExportImage) -> None:
        rows = kept_rows(image, self.ctx)
        classes, ids = maps(rows, image.height, image.width)
        target = self.path("masks", image.stem + ".png")
        target.write_bytes(png_bytes(classes))
        self.written.append(target)
        if traits(self.ctx.task).instance_masks:
            target = self.path("instances", image.stem + ".png")
            target.write_bytes(png_bytes(ids, palette=False))
            sidecar = self.path("instances", image.stem + ".json")
            sidecar.write_text(json.dumps(instance_sidecar(image, rows, ids)))
            self.written += [target, sidecar]


def read_png(path: Path) -> np.ndarray:
    """A map written here, values as stored (palette indices, 8- or 16-bit gray)."""
    im = Image.open(path)
    if im.mode in ("P", "L"):
        return np.asarray(im)
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ValueError(f"{path}: not an image OpenCV can read")
    return pixels
