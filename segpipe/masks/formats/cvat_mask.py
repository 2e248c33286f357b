"""``cvat-mask``: CVAT's "Segmentation mask 1.1" import, as one zip (``cvat-mask.zip``) to upload as is::

    labelmap.txt                       "# label:color_rgb:parts:actions", then background:0,0,0:: and one
                                       line per model category: name:r,g,b::
    SegmentationClass/<name>.png       RGB; each pixel the labelmap colour of its category
    SegmentationObject/<name>.png      RGB; each object (instance, or class region for semantic/binary
                                       jobs) in the VOC palette colour of its number 1..254
    ImageSets/Segmentation/default.txt one image name per line (file name without suffix)

CVAT (and datumaro's VOC importer, which CVAT runs) matches ``<name>`` to the task's image of that
name and recovers each object's label from the class image. One layer per image: where instances
overlap the higher-scoring one keeps the pixels (the same rule as ``png``). Images with nothing found
get all-black images and are still listed.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np

from segpipe.errors import DataError
from segpipe.masks import encode
from segpipe.masks.formats.base import PREDICTION_FORMATS, ExportContext, FormatWriter, kept_rows
from segpipe.masks.formats.png import painting_order
from segpipe.masks.rows import ExportImage

MAX_OBJECTS = 254  # VOC palette colours 1..254 (255 is VOC's "void")


def label_colours(categories: list[tuple[int, str]]) -> dict[int, tuple[int, int, int]]:
    """category id → RGB: VOC palette colour of the category's position 1..K (0, black, is background)."""
    palette = encode.voc_palette(256)
    colours: dict[int, tuple[int, int, int]] = {}
    for i, (cid, _name) in enumerate(categories):
        r, g, b = (int(v) for v in palette[(i % 254) + 1])
        colours[cid] = (r, g, b)
    return colours


def labelmap_text(categories: list[tuple[int, str]]) -> str:
    colours = label_colours(categories)
    lines = ["# label:color_rgb:parts:actions", "background:0,0,0::"]
    for cid, name in categories:
        if ":" in name:
            raise DataError(f"category {cid} {name!r}: a CVAT labelmap name cannot contain ':'")
        lines.append(f"{name}:{','.join(str(c) for c in colours[cid])}::")
    return "\n".join(lines) + "\n"


def _png_rgb(rgb: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buffer.tobytes()


@PREDICTION_FORMATS.register("cvat-mask", description="CVAT 'Segmentation mask 1.1' zip: cvat-mask.zip",
                  tags=("instance", "semantic", "binary"))
class CvatMaskWriter(FormatWriter):
    single_file = "cvat-mask.zip"
    annotator_facing = True  # pre-labels: duplicates suppressed by default

    def __init__(self, out: Path, ctx: ExportContext) -> None:
        super().__init__(out, ctx)
        self.target = self.path(self.single_file)
        self._part = self.target.with_name(self.single_file + ".part")
        self._zip = zipfile.ZipFile(self._part, "w", compression=zipfile.ZIP_DEFLATED)
        self._colours = label_colours(list(ctx.categories))
        self._palette = encode.voc_palette(256)
        self._names: list[str] = []

    def add(self, image: ExportImage) -> None:
        if image.stem.startswith("/") or ".." in Path(image.stem).parts:
            raise DataError(f"image {image.key}: file name {image.file_name!r} leaves the archive")
        rows = painting_order(kept_rows(image, self.ctx, self.annotator_facing))
        if len(rows) > MAX_OBJECTS:
            raise DataError(f"image {image.key}: {len(rows)} objects do not fit a CVAT mask (at most {MAX_OBJECTS})")
        classes = np.zeros((image.height, image.width, 3), np.uint8)
        objects = np.zeros((image.height, image.width, 3), np.uint8)
        # objects are numbered 1..N in instance order, painted lowest score first
        number = {r.instance: n for n, r in enumerate(sorted(rows, key=lambda r: r.instance), start=1)}
        for row in rows:
            if row.rle is None:
                continue
            mask = encode.rle_to_mask(row.rle).astype(bool)
            if row.category_id not in self._colours:
                raise DataError(f"image {image.key}: category {row.category_id} is not one of the model's categories")
            classes[mask] = self._colours[row.category_id]
            objects[mask] = self._palette[number[row.instance]]
        self._zip.writestr(f"SegmentationClass/{image.stem}.png", _png_rgb(classes))
        self._zip.writestr(f"SegmentationObject/{image.stem}.png", _png_rgb(objects))
        self._names.append(image.stem)

    def close(self) -> list[Path]:
        self._zip.writestr("labelmap.txt", labelmap_text(list(self.ctx.categories)))
        self._zip.writestr("ImageSets/Segmentation/default.txt", "".join(n + "\n" for n in self._names))
        self._zip.close()
        self._part.replace(self.target)
        self.written.append(self.target)
        return self.written

    def abort(self) -> None:
        self._zip.close()
        self._part.unlink(missing_ok=True)
