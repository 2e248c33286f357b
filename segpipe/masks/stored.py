"""Predictions as the store keeps them (one row per instance, masks as compressed RLE) ↔ the formats
annotation teams fetch: COCO results (RLE), polygons and PNG. Decoding happens only when asked."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from segpipe.data.categories import CategoryMap
from segpipe.masks import encode
from segpipe.prediction import Prediction


class Row(Protocol):
    image_key: str
    instance: int
    category_id: int | None
    category_name: str | None
    score: float | None
    bbox: list[float] | None
    rle: dict[str, Any] | None
    height: int
    width: int


def prediction_rows(pred: Prediction, category_map: CategoryMap) -> list[dict[str, Any]]:
    """Rows for `PredictionStore.write_image`: one per instance (per class present for label maps,
    one for a classification), category ids ORIGINAL, bbox xywh, mask compressed RLE."""
    rows = []
    for i, result in enumerate(encode.prediction_to_coco_results(pred, category_map)):
        label = category_map.to_label(result["category_id"]) if result["category_id"] in category_map else None
        rows.append(
            {
                "instance": i,
                "category_id": result["category_id"],
                "category_name": category_map.name_of_label(label) if label is not None else None,
                "score": result.get("score"),
                "bbox": result.get("bbox"),
                "rle": result.get("segmentation"),
            }
        )
    return rows


def coco_image_id(image_key: str) -> int | str:
    """Image keys are stored as text; COCO image ids go back out as ints."""
    return int(image_key) if image_key.isdigit() else image_key


def row_to_result(row: Row) -> dict[str, Any]:
    result: dict[str, Any] = {"image_id": coco_image_id(row.image_key), "category_id": row.category_id,
                              "score": row.score}
    if row.bbox is not None:
        result["bbox"] = row.bbox
    if row.rle is not None:
        result["segmentation"] = row.rle
    return result


def stream_results_json(rows: Iterable[Row]) -> Iterator[bytes]:
    """A COCO results JSON array, produced piece by piece (for streamed HTTP responses and files)."""
    yield b"["
    first = True
    for row in rows:
        yield (b"\n" if first else b",\n") + json.dumps(row_to_result(row), separators=(",", ":")).encode()
        first = False
    yield b"\n]\n"


def rows_to_polygons(rows: Sequence[Row], tolerance: float = 0.25) -> list[dict[str, Any]]:
    """Per instance: ``{instance, category_id, category_name, score, bbox, polygons}`` (COCO polygons)."""
    out = []
    for row in rows:
        polygons = encode.mask_to_polygons(encode.rle_to_mask(row.rle), tolerance) if row.rle else []
        out.append({"instance": row.instance, "category_id": row.category_id, "category_name": row.category_name,
                    "score": row.score, "bbox": row.bbox, "polygons": polygons})
    return out


def rows_to_png(rows: Sequence[Row], task: str | None = None) -> bytes:
    """One PNG for one image's rows: an instance-id map (value = instance number + 1, higher scores on
    top) — or, for ``semantic``/``binary`` jobs, the label map with the original category ids as values
    (binary: 255 foreground)."""
    import cv2

    if not rows:
        raise ValueError("no rows to draw")
    h, w = rows[0].height, rows[0].width
    canvas = np.zeros((h, w), np.uint16 if len(rows) > 254 else np.uint8)
    ordered = sorted(rows, key=lambda r: (r.score if r.score is not None else 0.0))  # best drawn last
    for row in ordered:
        if row.rle is None:
            continue
        mask = encode.rle_to_mask(row.rle).astype(bool)
        if task == "binary":
            canvas[mask] = 255
        elif task == "semantic":
            canvas[mask] = int(row.category_id or 0)
        else:
            canvas[mask] = row.instance + 1
    ok, buffer = cv2.imencode(".png", canvas)
    if not ok:
        raise ValueError("PNG encoding failed")
    return io.BytesIO(buffer.tobytes()).getvalue()


def blank_png(height: int, width: int) -> bytes:
    """The PNG of an image with no stored instances: an all-zero uint8 map of ``height``×``width``."""
    import cv2

    ok, buffer = cv2.imencode(".png", np.zeros((height, width), np.uint8))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buffer.tobytes()
