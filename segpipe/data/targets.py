"""Pure converters between annotation geometry and the Sample contract's arrays.

pycocotools does the RLE work; this module checks its input first, because pycocotools either crashes
or silently decodes garbage on malformed segmentations (a 4-number polygon is taken for a box, a
corrupt RLE string decodes to noise). Every error names the annotation and image when the caller
passes their ids: ``annotation 812 (image 44): polygon has 4 coordinates, needs at least 6``.

Shapes and dtypes (H, W = image height and width in pixels):
- a *segmentation* is COCO's: a list of polygons ``[[x1, y1, x2, y2, ...], ...]`` (pixel coordinates),
  an uncompressed RLE ``{"size": [H, W], "counts": [ints]}`` (column-major run lengths, zeros first),
  or a compressed RLE ``{"size": [H, W], "counts": str | bytes}``;
- masks are N×H×W ``uint8`` in {0, 1}; boxes are N×4 ``float32`` xyxy with x2/y2 exclusive;
- label maps are H×W ``uint8``.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from segpipe.errors import DataError
from segpipe.vocabulary import IGNORE_INDEX


def where(annotation_id: int | None, image_id: int | str | None) -> str:
    """Message prefix naming an annotation and its image: ``"annotation 812 (image 44)"``."""
    if annotation_id is None:
        return f"image {image_id}" if image_id is not None else "segmentation"
    return f"annotation {annotation_id}" + (f" (image {image_id})" if image_id is not None else "")


def annotation_error(annotation_id: int | None, image_id: int | str | None, problem: str) -> DataError:
    """A DataError whose message reads ``"annotation 812 (image 44): <problem>"``."""
    return DataError(f"{where(annotation_id, image_id)}: {problem}")


# ----------------------------------------------------------------------------------- segmentation → RLE


def segmentation_to_rle(
    segm: Any,
    height: int,
    width: int,
    *,
    annotation_id: int | None = None,
    image_id: int | str | None = None,
) -> dict[str, Any]:
    """Any COCO segmentation → one compressed RLE ``{"size": [H, W], "counts": bytes}``.

    Several polygons are merged into one region. Compressed RLE input is passed through (str counts
    become bytes) after its size is checked; its content is checked when decoded
    (`segmentation_to_mask`). Raises DataError naming the annotation/image when the input is malformed.
    """
    def fail(problem: str) -> DataError:
        return annotation_error(annotation_id, image_id, problem)

    if isinstance(segm, list):
        polygons = _checked_polygons(segm, fail)
        return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if not isinstance(segm, dict) or "counts" not in segm or "size" not in segm:
        raise fail(f"segmentation must be a polygon list or an RLE dict with size and counts, got {_kind(segm)}")
    size = segm["size"]
    if not (isinstance(size, Sequence) and len(size) == 2 and list(size) == [height, width]):
        raise fail(f"RLE size {size!r} differs from the image size [{height}, {width}]")
    counts = segm["counts"]
    if isinstance(counts, list):
        checked = _checked_run_lengths(counts, height * width, fail)
        return mask_utils.frPyObjects({"size": [height, width], "counts": checked}, height, width)
    if isinstance(counts, str):
        counts = counts.encode("ascii", errors="replace")
    if not isinstance(counts, bytes) or not counts:
        raise fail(f"RLE counts must be a list of run lengths or a non-empty string, got {_kind(counts)}")
    return {"size": [height, width], "counts": counts}


def segmentation_to_mask(
    segm: Any,
    height: int,
    width: int,
    *,
    annotation_id: int | None = None,
    image_id: int | str | None = None,
) -> np.ndarray:
    """Any COCO segmentation → H×W ``uint8`` mask in {0, 1}. Raises DataError on malformed input."""
    rle = segmentation_to_rle(segm, height, width, annotation_id=annotation_id, image_id=image_id)
    return np.ascontiguousarray(rle_to_mask(rle, annotation_id=annotation_id, image_id=image_id))


def rle_to_mask(
    rle: dict[str, Any], *, annotation_id: int | None = None, image_id: int | str | None = None
) -> np.ndarray:
    """Decode one compressed RLE to an H×W ``uint8`` {0, 1} mask (column-major, as pycocotools gives
    it: copy it into its destination rather than calling ``np.ascontiguousarray`` first).

    A corrupt counts string decodes to values other than 0/1 or to a pixel count that disagrees with
    the encoded area; both raise DataError instead of returning noise.
    """
    try:
        mask = mask_utils.decode(rle)
        area = int(mask_utils.area(rle))
    except (ValueError, TypeError) as e:
        raise annotation_error(annotation_id, image_id, f"cannot decode RLE ({e})") from None
    h, w = rle["size"]
    if mask.shape != (h, w) or mask.max(initial=0) > 1 or int(np.count_nonzero(mask)) != area:
        raise annotation_error(annotation_id, image_id, "corrupt compressed RLE counts string")
    return mask


def _checked_polygons(segm: list[Any], fail: Any) -> list[list[float]]:
    if not segm:
        raise fail("segmentation is an empty polygon list")
    polygons = []
    for k, poly in enumerate(segm):
        # one numpy conversion per polygon checks every coordinate (bools and strings give another dtype)
        coords = np.asarray(poly) if isinstance(poly, (list, tuple)) else None
        if coords is None or coords.ndim != 1 or coords.dtype.kind not in "iuf":
            raise fail(f"polygon {k} must be a flat list of numbers [x1, y1, x2, y2, ...], got {_kind(poly)}")
        if len(poly) < 6 or len(poly) % 2:
            need = "an even count" if len(poly) >= 6 else "at least 6"
            raise fail(f"polygon {k} has {len(poly)} coordinates, needs {need}")
        if not np.all(np.isfinite(coords)):
            raise fail(f"polygon {k} has non-finite coordinates")
        polygons.append(coords.astype(np.float64).tolist())
    return polygons


def _checked_run_lengths(counts: list[Any], total: int, fail: Any) -> list[int]:
    if not all(isinstance(c, Real) and float(c) >= 0 and float(c).is_integer() for c in counts):
        raise fail("uncompressed RLE counts must be non-negative integers")
    runs = [int(c) for c in counts]
    if sum(runs) != total:
        raise fail(f"uncompressed RLE counts sum to {sum(runs)}, the image has {total} pixels")
    return runs


def _kind(value: Any) -> str:
    return type(value).__name__


# ------------------------------------------------------------------------------------------------ boxes


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """N×H×W masks → N×4 ``float32`` xyxy boxes, x2/y2 exclusive (last set index + 1).

    An empty mask gives the all-zero box ``[0, 0, 0, 0]``. (OpenCV's boundingRect on each mask: about
    three times faster than reductions over the whole N×H×W stack; this runs on every augmented sample.)
    """
    boxes = np.zeros((masks.shape[0], 4), dtype=np.float32)
    for i, mask in enumerate(masks):
        x, y, w, h = cv2.boundingRect(np.ascontiguousarray(mask, dtype=np.uint8))
        if w and h:
            boxes[i] = (x, y, x + w, y + h)
    return boxes


def xywh_to_xyxy(boxes: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """COCO ``[x, y, w, h]`` boxes (N×4) → N×4 ``float32`` ``[x1, y1, x2, y2]``."""
    out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    out[:, 2:] += out[:, :2]
    return out


# ------------------------------------------------------------------------------------------- label maps


def instances_to_label_map(
    masks: np.ndarray,
    labels: np.ndarray | Sequence[int],
    crowd: np.ndarray | Sequence[bool] | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """Rasterise instances into one H×W ``uint8`` semantic label map (0 = background).

    ``masks``: N×H×W {0, 1}; ``labels``: N labels in 1..254; ``crowd``: N flags, True for crowd
    regions (None = no crowd). Overlaps: instances are drawn largest first (ties keep input order), so a
    small object lying on a big one stays visible on top. Crowd pixels become ``ignore_index`` unless a
    non-crowd instance covers them.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) != masks.shape[0]:
        raise ValueError(f"{masks.shape[0]} masks but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() > 255 or (labels == ignore_index).any()):
        raise ValueError(f"labels must fit uint8 and differ from ignore_index {ignore_index}, got {labels}")
    is_crowd = _crowd_flags(crowd, len(labels))
    label_map = np.zeros(masks.shape[1:], dtype=np.uint8)
    solid = ~is_crowd
    areas = masks.sum(axis=(1, 2), dtype=np.int64)
    for i in np.argsort(-areas, kind="stable"):
        if solid[i]:
            label_map[masks[i].astype(bool)] = labels[i]
    _mark_crowd(label_map, masks, is_crowd, ignore_index)
    return label_map


def instances_to_binary(
    masks: np.ndarray,
    crowd: np.ndarray | Sequence[bool] | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """Foreground/background H×W ``uint8`` map: 1 where any non-crowd instance is, else 0.

    Pass only the instances that count as foreground (e.g. the chosen categories). Crowd pixels
    become ``ignore_index`` unless a non-crowd instance covers them.
    """
    is_crowd = _crowd_flags(crowd, masks.shape[0])
    solid = masks[~is_crowd]
    label_map = solid.any(axis=0).astype(np.uint8) if len(solid) else np.zeros(masks.shape[1:], np.uint8)
    _mark_crowd(label_map, masks, is_crowd, ignore_index)
    return label_map


def _crowd_flags(crowd: np.ndarray | Sequence[bool] | None, n: int) -> np.ndarray:
    if crowd is None:
        return np.zeros(n, dtype=bool)
    flags = np.asarray(crowd, dtype=bool).reshape(-1)
    if len(flags) != n:
        raise ValueError(f"{n} masks but {len(flags)} crowd flags")
    return flags


def _mark_crowd(label_map: np.ndarray, masks: np.ndarray, is_crowd: np.ndarray, ignore_index: int) -> None:
    """Set crowd pixels that no non-crowd instance covers to ``ignore_index`` (in place)."""
    if not is_crowd.any():
        return
    crowd_area = masks[is_crowd].any(axis=0)
    covered = masks[~is_crowd].any(axis=0) if (~is_crowd).any() else np.zeros_like(crowd_area)
    label_map[crowd_area & ~covered] = ignore_index
