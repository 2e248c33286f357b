"""Small predictions with known masks, as `ExportImage`s, for every task kind the exports serve.

Categories have sparse original ids (3, 7, 11) so a test catches contiguous labels leaking out. Every
set has an image where nothing was found. Instances do not overlap unless a test asks for it, so
one-layer formats (PNG, CVAT masks) can be compared pixel for pixel with the stored RLE.
"""

from __future__ import annotations

import numpy as np

from segpipe.masks import encode
from segpipe.masks.formats import ExportContext
from segpipe.masks.rows import ExportImage, PredictionRow

CATEGORIES = [(3, "cat"), (7, "dog"), (11, "traffic light")]
H, W = 40, 48


def _disc(cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)


def _rect(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def _row(key: str, i: int, cid: int, score: float, mask: np.ndarray | None, box: list[float] | None = None) -> PredictionRow:
    name = dict(CATEGORIES)[cid]
    rle = encode.mask_to_rle(mask) if mask is not None else None
    bbox = encode.rle_to_box(rle) if rle is not None else box
    return PredictionRow("", key, i, cid, name, score, bbox, rle, H, W)


def instance_images(keys: tuple[str, str, str] = ("12", "5", "40")) -> list[ExportImage]:
    a, b, c = keys
    ring = _disc(20, 20, 9) - _disc(20, 20, 4)  # a hole
    return [
        ExportImage(a, f"{a}.jpg", H, W, [_row(a, 0, 3, 0.9, ring), _row(a, 1, 7, 0.8, _rect(2, 34, 12, 46)),
                                           _row(a, 2, 11, 0.7, _rect(30, 30, 38, 47))]),
        ExportImage(b, f"{b}.jpg", H, W, []),  # nothing found: still exported
        ExportImage(c, f"{c}.jpg", H, W, [_row(c, 0, 7, 0.95, _disc(10, 10, 6)), _row(c, 1, 7, 0.6, _disc(28, 36, 7))]),
    ]


def semantic_images() -> list[ExportImage]:
    return [
        ExportImage("a/one", "a/one.png", H, W, [_row("a/one", 0, 3, 1.0, _rect(0, 0, 20, 48)),
                                                   _row("a/one", 1, 11, 1.0, _disc(30, 24, 8))]),
        ExportImage("two", "two.png", H, W, []),
    ]


def binary_images() -> list[ExportImage]:
    return [
        ExportImage("cell1", "cell1.tif", H, W, [_row("cell1", 0, 3, 1.0, _disc(15, 15, 10) | _disc(30, 38, 5))]),
        ExportImage("cell2", "cell2.tif", H, W, []),
    ]


def detection_images() -> list[ExportImage]:
    return [
        ExportImage("1", "1.jpg", H, W, [_row("1", 0, 3, 0.9, None, [2.0, 3.0, 10.0, 12.5]),
                                         _row("1", 1, 11, 0.55, None, [20.0, 10.0, 25.0, 20.0])]),
        ExportImage("2", "2.jpg", H, W, []),
    ]


def classification_images() -> list[ExportImage]:
    return [
        ExportImage("x", "x.jpg", H, W, [_row("x", 0, 7, 0.7, None), _row("x", 1, 3, 0.2, None)]),
        ExportImage("y", "y.jpg", H, W, [_row("y", 0, 11, 0.9, None)]),
    ]


CASES = {
    "classification": (classification_images, CATEGORIES),
    "instance": (instance_images, CATEGORIES),
    "semantic": (semantic_images, CATEGORIES),
    "binary": (binary_images, [(3, "cell")]),
    "detection": (detection_images, CATEGORIES),
}


def case(task: str, **options: object) -> tuple[list[ExportImage], ExportContext]:
    make, categories = CASES[task]
    images = make()
    if task == "binary":  # the binary model has one category
        images = [ExportImage(i.key, i.file_name, i.height, i.width,
                              [PredictionRow(*[*r.to_dict().values()][:4], "cell", *[*r.to_dict().values()][5:])
                               for r in i.rows]) for i in images]
    return images, ExportContext(task=task, categories=categories, **options)  # type: ignore[arg-type]
