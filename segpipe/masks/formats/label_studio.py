"""``label-studio``: Label Studio tasks with predictions, and the labeling config they belong to.

Writes ``tasks.json`` (a JSON list, imported as is through Label Studio's Import button or its API)
and ``label_config.xml`` (paste it into the project's Labeling Interface → Code). One task per image::

    {"data": {"image": "<image_url_prefix><file_name>", "segpipe_image_id": "7", ...ExportImage.task_data},
     "predictions": [{"model_version": "dogs@3", "score": 0.91, "result": [REGION, ...]}]}

Regions (``from_name`` / ``to_name`` match `labeling_config`; coordinates in Label Studio's percent of
the image size, ``original_width`` / ``original_height`` in pixels):
- instance / semantic / binary: ``brushlabels`` with ``value: {"format": "rle", "rle": [bytes…],
  "brushlabels": [name]}`` in Label Studio's own brush RLE (`mask_to_brush_rle`) — exact masks; or
  with ``segmentation="polygons"`` one ``polygonlabels`` region per outline; ``"both"`` gives both;
- detection: ``rectanglelabels`` (``x, y, width, height`` in percent);
- classification: ``choices`` with the best class.

This module is also the Label Studio conversion library of segpipe (the ML backend uses it): the
brush RLE codec, the labeling config and the region builders are plain functions.

Brush RLE: Label Studio stores a brush mask as an RGBA bitmap (every pixel's value repeated over the
4 channels, 0 or 255) packed with thi.ng's rle-pack: a 32-bit word count, the word size minus one
(5 bits), four run-length field sizes minus one (4 bits each), then chunks of ``flag(1) size-class(2)
count-1 (field size)`` followed by one word (flag 1: a repeated run) or ``count`` words (flag 0), all
MSB first and zero-padded to whole bytes. We write only repeated runs, which any decoder reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from segpipe.masks import encode
from segpipe.masks.formats.base import PREDICTION_FORMATS, ExportContext, FormatWriter, kept_rows
from segpipe.masks.rows import ExportImage, PredictionRow
from segpipe.task_kinds import traits

RLE_FIELD_BITS = (3, 4, 8, 16)  # run-length field sizes, smallest first
WORD_BITS = 8
CHANNELS = 4  # RGBA
TO_NAME = "image"
FROM_NAMES = {"brush": "label", "polygon": "polygon", "rectangle": "box", "choices": "class"}
# An instance model's config also gets a smart rectangle tool: the box an annotator draws with it is the
# prompt of segpipe's box-to-mask assist (the ML backend answers the object's mask), not an annotation.
BOX_PROMPT = "box_prompt"

# ---------------------------------------------------------------------------------------------
# brush RLE


def mask_to_brush_rle(mask: np.ndarray) -> list[int]:
    """H×W mask (non-zero = foreground) → Label Studio brush RLE (a list of byte values)."""
    pixels = (np.asarray(mask).reshape(-1) != 0).astype(np.uint8) * np.uint8(255)
    if pixels.size == 0:
        raise ValueError("an empty (0-pixel) mask has no brush RLE")
    edges = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1
    starts = np.concatenate([[0], edges])
    lengths = np.diff(np.concatenate([starts, [pixels.size]])) * CHANNELS
    values = pixels[starts]
    cap = 1 << RLE_FIELD_BITS[-1]
    header = f"{pixels.size * CHANNELS:032b}{WORD_BITS - 1:05b}" + "".join(f"{b - 1:04b}" for b in RLE_FIELD_BITS)
    pieces = [header]
    for run_length, value in zip(lengths.tolist(), values.tolist(), strict=True):
        length = run_length
        while length > 0:
            n = min(length, cap)
            size_class = next(i for i, bits in enumerate(RLE_FIELD_BITS) if n - 1 < (1 << bits))
            bits = RLE_FIELD_BITS[size_class]
            pieces.append(f"1{size_class:02b}{n - 1:0{bits}b}{value:08b}")
            length -= n
    stream = "".join(pieces)
    stream += "0" * (-len(stream) % 8)
    return np.packbits(np.frombuffer(stream.encode("ascii"), np.uint8) - ord("0")).tolist()


def brush_rle_to_mask(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """Label Studio brush RLE → H×W uint8 {0, 1} (alpha channel > 0), for reading regions back."""
    bits = np.unpackbits(np.asarray(rle, np.uint8))
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        value = 0
        for b in bits[pos : pos + n]:
            value = (value << 1) | int(b)
        pos += n
        return value

    total = read(32)
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(total, np.uint8)
    i = 0
    while i < total:
        repeated = read(1)
        j = i + 1 + read(sizes[read(2)])
        if repeated:
            out[i:j] = read(word)
        else:
            for k in range(i, j):
                out[k] = read(word)
        i = j
    if total != height * width * CHANNELS:
        raise ValueError(f"brush RLE holds {total} values, a {height}×{width} RGBA image needs {height * width * 4}")
    return (out.reshape(height, width, CHANNELS)[:, :, 3] > 0).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# labeling config and regions


def region_kinds(task: str, segmentation: str = "rle") -> list[str]:
    """The control tags a task's predictions use: brush and/or polygon, rectangle, or choices."""
    kind = traits(task)
    if kind.target == "class_id":
        return ["choices"]
    if kind.instances and not kind.instance_masks:
        return ["rectangle"]
    return {"rle": ["brush"], "polygons": ["polygon"], "both": ["brush", "polygon"]}[segmentation]


def labeling_config(task: str, categories: Sequence[tuple[int, str]], segmentation: str = "rle") -> str:
    """The Label Studio labeling config XML for a task kind's predictions (label values = category names).

    An instance model's config ends with a ``RectangleLabels`` tool marked ``smart="true"``
    (`BOX_PROMPT`): with auto-annotation on, a box drawn with it asks the ML backend for the mask of
    the object inside it."""
    tags = {"brush": "BrushLabels", "polygon": "PolygonLabels", "rectangle": "RectangleLabels", "choices": "Choices"}
    colours = encode.voc_palette(256)
    lines = ["<View>", f'  <Image name="{TO_NAME}" value="$image" zoom="true"/>']
    controls = [(kind, tags[kind], FROM_NAMES[kind], "") for kind in region_kinds(task, segmentation)]
    if traits(task).instance_masks:
        controls.append(("rectangle", "RectangleLabels", BOX_PROMPT, ' smart="true"'))
    for kind, tag, name, smart in controls:
        extra = ' choice="single"' if kind == "choices" else smart
        lines.append(f'  <{tag} name="{name}" toName="{TO_NAME}"{extra}>')
        for index, (_cid, label) in enumerate(categories, start=1):
            r, g, b = (int(v) for v in colours[index % 255 or 1])
            child = "Choice" if kind == "choices" else "Label"
            colour = "" if kind == "choices" else f' background="#{r:02x}{g:02x}{b:02x}"'
            lines.append(f"    <{child} value={quoteattr(label)}{colour}/>")
        lines.append(f"  </{tag}>")
    lines.append("</View>")
    return "\n".join(lines) + "\n"


def _base(kind: str, row: PredictionRow, height: int, width: int) -> dict[str, Any]:
    return {"id": f"r{row.instance}{kind[0]}", "from_name": FROM_NAMES[kind], "to_name": TO_NAME,
            "type": {"brush": "brushlabels", "polygon": "polygonlabels", "rectangle": "rectanglelabels",
                     "choices": "choices"}[kind],
            "original_width": width, "original_height": height, "image_rotation": 0,
            "score": row.score}


def regions(rows: Sequence[PredictionRow], height: int, width: int, task: str, segmentation: str = "rle",
            tolerance: float = 0.25) -> list[dict[str, Any]]:
    """Label Studio result regions for one image's rows (``label`` = the row's category name)."""
    out: list[dict[str, Any]] = []
    kinds = region_kinds(task, segmentation)
    if kinds == ["choices"]:
        if rows:
            best = rows[0]
            out.append(_base("choices", best, height, width) | {"value": {"choices": [best.category_name]}})
        return out
    for row in rows:
        name = row.category_name
        if "rectangle" in kinds and row.bbox is not None:
            x, y, w, h = row.bbox
            value = {"x": 100 * x / width, "y": 100 * y / height, "width": 100 * w / width,
                     "height": 100 * h / height, "rotation": 0, "rectanglelabels": [name]}
            out.append(_base("rectangle", row, height, width) | {"value": value})
        if row.rle is None:
            continue
        if "brush" not in kinds and "polygon" not in kinds:
            continue
        mask = encode.rle_to_mask(row.rle)
        if "brush" in kinds:
            value = {"format": "rle", "rle": mask_to_brush_rle(mask), "brushlabels": [name]}
            out.append(_base("brush", row, height, width) | {"value": value})
        if "polygon" in kinds:
            for k, polygon in enumerate(encode.mask_to_polygons(mask, tolerance)):
                points = [[100 * polygon[i] / width, 100 * polygon[i + 1] / height] for i in range(0, len(polygon), 2)]
                region = _base("polygon", row, height, width) | {"value": {"points": points, "closed": True,
                                                                         "polygonlabels": [name]}}
                region["id"] += str(k)
                out.append(region)
    return out


def task_for(image: ExportImage, rows: Sequence[PredictionRow], ctx: ExportContext) -> dict[str, Any]:
    """One Label Studio task with one prediction holding every region of the image."""
    result = regions(rows, image.height, image.width, ctx.task, ctx.segmentation, ctx.polygon_tolerance)
    scores = [r.score for r in rows if r.score is not None]
    prediction = {"model_version": ctx.model_version, "score": float(np.mean(scores)) if scores else 0.0,
                  "result": result}
    data = {**image.task_data, "image": ctx.image_url_prefix + image.file_name, "segpipe_image_id": image.key}
    return {"data": data, "predictions": [prediction]}


@PREDICTION_FORMATS.register("label-studio", description="Label Studio tasks JSON with predictions + label_config.xml",
                  tags=("instance", "detection", "semantic", "binary", "classification"))
class LabelStudioWriter(FormatWriter):
    annotator_facing = True  # pre-labels: duplicates suppressed by default

    def __init__(self, out: Path, ctx: ExportContext) -> None:
        super().__init__(out, ctx)
        self.target = self.path("tasks.json")
        self._part = self.target.with_name("tasks.json.part")
        self._file = self._part.open("w", encoding="utf-8")
        self._file.write("[")
        self.count = 0

    def add(self, image: ExportImage) -> None:
        task = task_for(image, kept_rows(image, self.ctx, self.annotator_facing), self.ctx)
        self._file.write(",\n" if self.count else "\n")
        self._file.write(json.dumps(task, separators=(",", ":")))
        self.count += 1

    def close(self) -> list[Path]:
        self._file.write("\n]\n")
        self._file.close()
        self._part.replace(self.target)
        config = self.path("label_config.xml")
        config.write_text(labeling_config(self.ctx.task, self.ctx.categories, self.ctx.segmentation))
        self.written += [self.target, config]
        return self.written

    def abort(self) -> None:
        self._file.close()
        self._part.unlink(missing_ok=True)
