"""Everything that turns masks and predictions into files: COCO RLE, PNG, polygons, COCO results JSON.

Coordinates are original-image pixels. COCO's continuous coordinates put pixel (row i, column j) on
the square [j, j+1) × [i, i+1), so its centre is (j + 0.5, i + 0.5); polygons here follow that.
Exported category ids are always the dataset's original ids (CategoryMap applied in reverse).

Round trips: ``rle_to_mask(mask_to_rle(m)) == m`` and a PNG written here reads back identically.
Polygons cannot hold holes (COCO unions a segmentation's polygons), so ``mask_to_polygons`` outlines
outer boundaries only and holes come back filled; otherwise the default tolerance rasterises back to
the same mask on smooth shapes. Use RLE when a mask must be exact.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Self

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from segpipe.data.categories import CategoryMap
from segpipe.errors import DataError
from segpipe.prediction import Instance, Prediction
from segpipe.task_kinds import TRAITS
from segpipe.vocabulary import IGNORE_INDEX

_CONTOUR_SCALE = 2  # contours are traced on a 2× nearest-upsampled mask, see mask_to_polygons

# ---------------------------------------------------------------------------------------------
# RLE


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """H×W mask (non-zero = foreground) → compressed COCO RLE ``{"size": [h, w], "counts": str}``."""
    mask = _binary_2d(mask, "mask_to_rle")
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (compressed, counts str or bytes; or uncompressed, counts a list) → H×W uint8 {0, 1}."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise DataError(f"not a COCO RLE (needs 'size' [h, w] and 'counts'): {_short(rle)}") from None
    if isinstance(counts, list):
        if sum(int(c) for c in counts) != h * w:
            raise DataError(f"uncompressed RLE counts sum to {sum(counts)}, size {h}×{w} needs {h * w}")
        compressed = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    elif isinstance(counts, str | bytes):
        compressed = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    else:
        raise DataError(f"RLE counts must be a string or a list, got {type(counts).__name__}")
    return mask_utils.decode(compressed).astype(np.uint8, copy=False)


def rle_area(rle: dict[str, Any]) -> int:
    """Foreground pixel count of a compressed RLE, without decoding it."""
    return int(mask_utils.area(_compressed(rle)))


def rle_to_box(rle: dict[str, Any]) -> list[float]:
    """Tight COCO box ``[x, y, w, h]`` (pixels) of a compressed RLE; zeros for an empty mask."""
    return [float(v) for v in mask_utils.toBbox(_compressed(rle))]


def _compressed(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


# ---------------------------------------------------------------------------------------------
# Polygons


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.25) -> list[list[float]]:
    """H×W mask → COCO polygons: a list of flattened ``[x1, y1, x2, y2, ...]`` outlines, ≥ 3 points each.

    One polygon per outer boundary (``cv2.RETR_EXTERNAL``); holes are not represented, so they come back
    filled when the polygons are rasterised. ``tolerance`` (pixels) is the Douglas–Peucker distance used
    to drop vertices; 0 keeps every corner of the pixel staircase.

    Why trace a 2× upsampled mask: contours of the mask itself run through the centres of boundary
    pixels, and COCO's rasteriser then keeps only about half of those pixels. On the 2× grid the
    outline lies a quarter pixel inside the true pixel edges, so every boundary pixel centre is inside
    and every outside centre is out: ``polygons_to_mask`` gives back the same mask (holes aside) for
    tolerance ≤ 0.25.
    """
    mask = _binary_2d(mask, "mask_to_polygons")
    if tolerance < 0:
        raise ValueError(f"tolerance must be ≥ 0 pixels, got {tolerance}")
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return []
    # Trace only the occupied window (plus a 1-pixel margin so outlines never touch the border).
    y0, x0 = max(int(ys.min()) - 1, 0), max(int(xs.min()) - 1, 0)
    window = mask[y0 : int(ys.max()) + 2, x0 : int(xs.max()) + 2]
    s = _CONTOUR_SCALE
    up = cv2.resize(window, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        outline = contour
        if tolerance > 0:
            simplified = cv2.approxPolyDP(contour, tolerance * s, True)
            # a thin sliver may collapse to a segment; keep its unsimplified outline instead
            outline = simplified if len(simplified) >= 3 else contour
        points = outline.reshape(-1, 2).astype(np.float64)
        if len(points) < 3:
            continue
        # upsampled pixel u has its centre at (u + 0.5) / s in original continuous coordinates
        points = (points + 0.5) / s + (x0, y0)
        polygons.append([float(v) for v in points.reshape(-1)])
    return polygons


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """COCO polygons (flattened x, y lists, pixels) → H×W uint8 {0, 1}, rasterised by pycocotools."""
    checked = []
    for i, polygon in enumerate(polygons):
        n = len(polygon)
        if n < 6 or n % 2:
            # 4 numbers would silently be read as a box by pycocotools, so refuse them here
            raise DataError(f"polygon {i} has {n} coordinates, needs an even number, at least 6")
        checked.append([float(v) for v in polygon])
    if not checked:
        return np.zeros((height, width), np.uint8)
    rle = mask_utils.merge(mask_utils.frPyObjects(checked, height, width))
    return mask_utils.decode(rle).astype(np.uint8, copy=False)


# ---------------------------------------------------------------------------------------------
# COCO results


def box_xyxy_to_xywh(box: Sequence[float]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def prediction_to_coco_results(pred: Prediction, category_map: CategoryMap) -> list[dict[str, Any]]:
    """One Prediction → COCO results dicts (``COCO.loadRes`` format), category ids ORIGINAL.

    - instance / detection: one dict per instance ``{image_id, category_id, bbox [x, y, w, h], score}``
      plus ``segmentation`` (compressed RLE) when the instance has a mask;
    - semantic / binary: one dict per class present in the label map (background 0 and ignore 255
      skipped) with the class's RLE, its tight ``bbox`` and ``score`` 1.0 (a label map has no
      confidence; COCOeval needs a score to rank);
    - classification: ``{image_id, category_id, score}`` for the arg-max class.
    """
    image_id = plain_image_id(pred.image_id)
    if pred.instances or (pred.task in TRAITS and TRAITS[pred.task].instances):
        return [_instance_result(image_id, inst, category_map) for inst in pred.instances]
    if pred.label_map is not None:
        results = []
        for label, rle in label_map_rles(pred.label_map):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": _category_of(category_map, label, image_id),
                    "bbox": rle_to_box(rle),
                    "score": 1.0,
                    "segmentation": rle,
                }
            )
        return results
    if pred.class_id is not None:
        score = float(pred.scores[pred.class_id]) if pred.scores is not None else 1.0
        return [
            {
                "image_id": image_id,
                "category_id": _category_of(category_map, pred.class_id, image_id),
                "score": score,
            }
        ]
    return []


def _instance_result(image_id: Any, inst: Instance, category_map: CategoryMap) -> dict[str, Any]:
    result: dict[str, Any] = {
        "image_id": image_id,
        "category_id": _category_of(category_map, inst.label, image_id),
        "bbox": box_xyxy_to_xywh(inst.box),
        "score": float(inst.score),
    }
    if inst.rle is not None:
        counts = inst.rle["counts"]
        result["segmentation"] = {
            "size": [int(v) for v in inst.rle["size"]],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
        }
    return result


def label_map_rles(label_map: np.ndarray) -> list[tuple[int, dict[str, Any]]]:
    """(label, RLE) for every label present in an H×W label map, background 0 and ignore 255 excluded."""
    labels = [int(v) for v in np.unique(label_map) if v not in (0, IGNORE_INDEX)]
    return [(label, mask_to_rle(label_map == label)) for label in labels]


def _category_of(category_map: CategoryMap, label: int, image_id: Any) -> int:
    try:
        return category_map.to_category(int(label))
    except KeyError:
        raise DataError(
            f"image {image_id}: predicted label {label} has no category "
            f"(labels {category_map.offset}..{category_map.num_labels - 1})"
        ) from None


class CocoResultsWriter:
    """Streams COCO results into a JSON array at ``path``, one prediction at a time, never collecting
    them in memory. The file appears only when complete (written beside it, renamed on close)."""

    def __init__(self, path: str | Path, category_map: CategoryMap) -> None:
        self.path = Path(path)
        self.category_map = category_map
        self.count = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".part")
        self._file = self._tmp.open("w", encoding="utf-8")
        self._file.write("[")

    def add(self, pred: Prediction) -> int:
        """Append one prediction's results; returns how many were written."""
        results = prediction_to_coco_results(pred, self.category_map)
        for result in results:
            self._file.write(",\n" if self.count else "\n")
            self._file.write(json.dumps(result, separators=(",", ":")))
            self.count += 1
        return len(results)

    def close(self) -> None:
        self._file.write("\n]\n")
        self._file.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.abort() if exc_type is not None else self.close()


def write_coco_results(
    predictions: Iterable[Prediction], category_map: CategoryMap, path: str | Path
) -> int:
    """Stream predictions into a COCO results JSON array at ``path``; returns the number of results."""
    with CocoResultsWriter(path, category_map) as writer:
        for pred in predictions:
            writer.add(pred)
    return writer.count


# ---------------------------------------------------------------------------------------------
# PNG


@lru_cache(maxsize=1)
def _voc_palette() -> np.ndarray:
    colours = np.zeros((256, 3), np.uint8)
    for i in range(256):
        r = g = b = 0
        c = i
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours[i] = (r, g, b)
    return colours


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: (n, 3) uint8; 0 black, then well-separated colours, 255 (ignore) pale.

    The colour of index i spreads the bits of i over the high bits of R, G and B, so neighbouring
    class indices get very different colours and the map never changes between runs.
    """
    if not 1 <= n <= 256:
        raise ValueError(f"a palette has 1..256 colours, asked for {n}")
    return _voc_palette()[:n].copy()


def label_map_to_png(label_map: np.ndarray, path: str | Path, palette: bool = True) -> Path:
    """Write an H×W uint8 label map as a PNG whose pixel value is the class index (255 = ignore).

    With ``palette`` the PNG is a palette image (VOC colours) so it is viewable as is, while any
    reader that takes indices (``segpipe.data.images.read_mask``, PIL mode "P") still gets the labels.
    """
    label_map = np.asarray(label_map)
    if label_map.ndim != 2 or label_map.dtype != np.uint8:
        raise ValueError(f"label map must be H×W uint8, got {label_map.shape} {label_map.dtype}")
    path = _ready(path)
    im = Image.fromarray(label_map)  # mode "L": pixel values are the labels
    if palette:
        im.putpalette(voc_palette().reshape(-1).tolist())  # turns it into mode "P", indices unchanged
    im.save(path, format="PNG")
    return path


def binary_to_png(mask: np.ndarray, path: str | Path) -> Path:
    """Write an H×W mask as a grayscale PNG: non-zero → 255, zero → 0."""
    mask = _binary_2d(mask, "binary_to_png")
    path = _ready(path)
    Image.fromarray(mask * np.uint8(255)).save(path, format="PNG")
    return path


def instances_to_id_map(instances: Sequence[Instance], height: int, width: int) -> np.ndarray:
    """Instance-id map: pixel = 1 + index of the instance in ``instances``, 0 = no instance.

    Overlaps go to the higher-scoring instance (painted last). uint8 when there are at most 255
    instances, else uint16. Every instance needs a mask (``rle``); detection boxes are not painted.
    """
    if len(instances) > 65535:
        raise ValueError(f"{len(instances)} instances do not fit a uint16 id map")
    dtype = np.uint8 if len(instances) <= 255 else np.uint16
    id_map = np.zeros((height, width), dtype)
    # stable sort ascending by score: equal scores keep list order, the later one on top
    for index in sorted(range(len(instances)), key=lambda i: instances[i].score):
        inst = instances[index]
        if inst.rle is None:
            raise ValueError(f"instance {index} has no mask; an id map needs instance masks")
        mask = rle_to_mask(inst.rle)
        if mask.shape != (height, width):
            raise ValueError(
                f"instance {index}: mask is {mask.shape[0]}×{mask.shape[1]}, the map {height}×{width}"
            )
        id_map[mask.astype(bool)] = index + 1
    return id_map


def id_map_to_png(id_map: np.ndarray, path: str | Path) -> Path:
    """Write an instance-id map (uint8 or uint16) as an 8- or 16-bit grayscale PNG, values as stored."""
    if id_map.ndim != 2 or id_map.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"id map must be H×W uint8 or uint16, got {id_map.shape} {id_map.dtype}")
    path = _ready(path)
    if not cv2.imwrite(str(path), id_map):
        raise OSError(f"{path}: could not write PNG")
    return path


# ---------------------------------------------------------------------------------------------
# Polygons JSON and classification rows


def prediction_to_polygon_records(
    pred: Prediction, category_map: CategoryMap, tolerance: float = 0.25
) -> list[dict[str, Any]]:
    """Objects of one prediction as ``{category_id, category_name, score, bbox, polygons}`` dicts.

    Category ids are original; ``bbox`` is COCO ``[x, y, w, h]``. Instances keep their order (the same
    as in COCO results and id maps); a detection instance without a mask gets its box as the polygon.
    Semantic / binary predictions give one record per class present, score None.
    """
    records = []
    image_id = plain_image_id(pred.image_id)
    for inst in pred.instances:
        if inst.rle is not None:
            polygons = mask_to_polygons(rle_to_mask(inst.rle), tolerance)
        else:
            x1, y1, x2, y2 = (float(v) for v in inst.box)
            polygons = [[x1, y1, x2, y1, x2, y2, x1, y2]]
        box = box_xyxy_to_xywh(inst.box)
        records.append(_record(category_map, inst.label, image_id, float(inst.score), box, polygons))
    if pred.label_map is not None and not pred.instances:
        for label, rle in label_map_rles(pred.label_map):
            polygons = mask_to_polygons(pred.label_map == label, tolerance)
            records.append(_record(category_map, label, image_id, None, rle_to_box(rle), polygons))
    return records


def _record(
    category_map: CategoryMap, label: int, image_id: Any, score: float | None, bbox: list[float], polygons: list
) -> dict[str, Any]:
    return {
        "category_id": _category_of(category_map, label, image_id),
        "category_name": category_map.name_of_label(int(label)),
        "score": score,
        "bbox": bbox,
        "polygons": polygons,
    }


def write_polygons_json(
    pred: Prediction, category_map: CategoryMap, path: str | Path, tolerance: float = 0.25
) -> Path:
    """Write one image's objects as polygons: ``{image_id, height, width, objects: [record, ...]}``.

    Records are those of ``prediction_to_polygon_records``: flat COCO polygons in pixels with original
    category ids and names, the shape CVAT / Label Studio import scripts map over directly.
    """
    document = {
        "image_id": plain_image_id(pred.image_id),
        "height": pred.height,
        "width": pred.width,
        "objects": prediction_to_polygon_records(pred, category_map, tolerance),
    }
    path = _ready(path)
    path.write_text(json.dumps(document))
    return path


def topk_rows(pred: Prediction, category_map: CategoryMap, k: int = 5) -> list[dict[str, Any]]:
    """Classification → up to ``k`` rows ``{image_id, rank, category_id, category_name, score}``, best first.

    Needs ``pred.scores`` (K probabilities) for more than one row; without scores the single row is the
    predicted class with score None. Ties keep the lower class index first.
    """
    if pred.scores is None:
        if pred.class_id is None:
            return []
        ranked: list[tuple[int, float | None]] = [(int(pred.class_id), None)]
    else:
        scores = np.asarray(pred.scores, dtype=np.float64).reshape(-1)
        order = np.argsort(-scores, kind="stable")[: max(int(k), 0)]
        ranked = [(int(i), float(scores[i])) for i in order]
    image_id = plain_image_id(pred.image_id)
    return [
        {
            "image_id": image_id,
            "rank": rank,
            "category_id": _category_of(category_map, index, image_id),
            "category_name": category_map.name_of_label(index),
            "score": score,
        }
        for rank, (index, score) in enumerate(ranked, start=1)
    ]


# ---------------------------------------------------------------------------------------------
# helpers


def plain_image_id(image_id: Any) -> Any:
    """numpy integers → int so ids compare equal to COCO's and serialise to JSON."""
    return int(image_id) if isinstance(image_id, np.integer) else image_id


def _binary_2d(mask: np.ndarray, what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{what}: mask must be H×W, got shape {mask.shape}")
    return (mask != 0).astype(np.uint8)


def _ready(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _short(obj: Any, limit: int = 80) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[:limit] + "…"
