"""Small generated datasets of coloured shapes, in every layout segpipe reads.

Used by the tests (which never depend on downloaded data), by ``segpipe demo`` and by benchmarks.
Shapes are drawn from the same polygons that go into the annotations, so a model can really learn them.

The COCO flavour exercises the awkward parts on purpose: non-contiguous category ids, polygons,
compressed RLE, crowd regions with uncompressed RLE, and images without annotations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

# Sparse ids on purpose, like COCO's 1..90.
SHAPE_CATEGORIES: tuple[tuple[int, str], ...] = ((3, "circle"), (7, "square"), (12, "triangle"))
_COLOURS = {"circle": (220, 60, 60), "square": (60, 200, 60), "triangle": (70, 90, 230)}


@dataclass(frozen=True)
class ShapesCoco:
    images: Path
    annotations: Path


def shape_polygon(kind: str, cx: float, cy: float, r: float, rng: np.random.Generator) -> np.ndarray:
    """Vertices (K×2 float, x/y pixels) of a shape centred at (cx, cy) with radius r."""
    if kind == "circle":
        t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
    if kind == "square":
        a = rng.uniform(0, np.pi / 2)
        t = a + np.arange(4) * np.pi / 2 + np.pi / 4
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
    a = rng.uniform(0, 2 * np.pi)
    t = a + np.arange(3) * 2 * np.pi / 3
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.integers(90, 170, size=3)
    noise = rng.normal(0, 12, size=(h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _draw(image: np.ndarray, poly: np.ndarray, kind: str) -> None:
    pts = np.round(poly).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(image, [pts], _COLOURS[kind])


def make_shapes_coco(
    out_dir: str | Path,
    n_images: int = 8,
    size: tuple[int, int] = (96, 128),
    max_shapes: int = 3,
    seed: int = 0,
    crowd: bool = True,
    rle: bool = True,
    empty_images: int = 1,
    image_ext: str = ".png",
    annotations_name: str = "annotations.json",
) -> ShapesCoco:
    """Write ``out_dir/images/*`` and ``out_dir/annotations.json`` (COCO instances format).

    ``size`` is (height, width). The first ``empty_images`` images carry no annotation. When ``rle``
    every third object is stored as compressed RLE instead of a polygon; when ``crowd`` the last
    non-empty image gets an ``iscrowd=1`` region stored as uncompressed RLE (as COCO does).
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    images, annotations = [], []
    ann_id = 100  # ids that are not 0..N-1 catch code that confuses ids with indices
    for i in range(n_images):
        image_id = 1000 + i
        file_name = f"img_{i:04d}{image_ext}"
        image = _background(rng, h, w)
        n = 0 if i < empty_images else int(rng.integers(1, max_shapes + 1))
        for _ in range(n):
            cat_id, kind = SHAPE_CATEGORIES[int(rng.integers(len(SHAPE_CATEGORIES)))]
            r = float(rng.uniform(0.12, 0.25) * min(h, w))
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            poly = shape_polygon(kind, cx, cy, r, rng)
            _draw(image, poly, kind)
            flat = [round(float(v), 2) for v in poly.reshape(-1)]
            rle_obj = mask_utils.merge(mask_utils.frPyObjects([flat], h, w))
            ann: dict = {
                "id": ann_id,
                "image_id": image_id,
                "category_id": cat_id,
                "iscrowd": 0,
                "area": float(mask_utils.area(rle_obj)),
                "bbox": [round(float(v), 2) for v in mask_utils.toBbox(rle_obj)],
            }
            if rle and ann_id % 3 == 0:
                ann["segmentation"] = {"size": [h, w], "counts": rle_obj["counts"].decode("ascii")}
            else:
                ann["segmentation"] = [flat]
            annotations.append(ann)
            ann_id += 1
        if crowd and i == n_images - 1 and n_images > empty_images:
            crowd_mask = np.zeros((h, w), np.uint8)
            crowd_mask[: h // 6, : w // 4] = 1
            image[: h // 6, : w // 4] = _COLOURS["circle"]
            annotations.append(_crowd_annotation(ann_id, image_id, SHAPE_CATEGORIES[0][0], crowd_mask))
            ann_id += 1
        _write_image(out / "images" / file_name, image)
        images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
    dataset = {
        "info": {"description": "segpipe synthetic shapes"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": "shape"} for cid, name in SHAPE_CATEGORIES],
    }
    ann_path = out / annotations_name
    ann_path.write_text(json.dumps(dataset))
    return ShapesCoco(out / "images", ann_path)


def _crowd_annotation(ann_id: int, image_id: int, cat_id: int, mask: np.ndarray) -> dict:
    """COCO stores crowd regions as uncompressed RLE: column-major run lengths starting with zeros."""
    flat = np.asfortranarray(mask).reshape(-1, order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    encoded = mask_utils.encode(np.asfortranarray(mask))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cat_id,
        "iscrowd": 1,
        "area": float(mask_utils.area(encoded)),
        "bbox": [float(v) for v in mask_utils.toBbox(encoded)],
        "segmentation": {"size": list(mask.shape), "counts": counts},
    }


def _write_image(path: Path, rgb: np.ndarray) -> None:
    ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: could not write image")


def make_mask_folders(
    out_dir: str | Path,
    n_images: int = 8,
    size: tuple[int, int] = (64, 64),
    binary: bool = False,
    foreground_value: int = 255,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write ``images/*.png`` and ``masks/*.png``. Semantic masks hold class indices 0..3
    (0 background, then circle, square, triangle); binary masks hold 0 / ``foreground_value``."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    for i in range(n_images):
        image = _background(rng, h, w)
        label_map = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            cls = int(rng.integers(len(SHAPE_CATEGORIES)))
            kind = SHAPE_CATEGORIES[cls][1]
            r = float(rng.uniform(0.12, 0.25) * min(h, w))
            poly = shape_polygon(kind, rng.uniform(r, w - r), rng.uniform(r, h - r), r, rng)
            _draw(image, poly, kind)
            pts = np.round(poly).astype(np.int32).reshape(-1, 1, 2)
            cv2.fillPoly(label_map, [pts], (foreground_value if binary else cls + 1,))
        _write_image(out / "images" / f"s{i:03d}.png", image)
        cv2.imwrite(str(out / "masks" / f"s{i:03d}.png"), label_map)
    return out / "images", out / "masks"


def make_class_folders(
    out_dir: str | Path, per_class: int = 6, size: tuple[int, int] = (32, 32), seed: int = 0
) -> Path:
    """Write ``root/<shape name>/*.png``, one shape per image, centred-ish. Returns the root."""
    root = Path(out_dir)
    rng = np.random.default_rng(seed)
    h, w = size
    for _, kind in SHAPE_CATEGORIES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = _background(rng, h, w)
            r = float(rng.uniform(0.25, 0.4) * min(h, w))
            poly = shape_polygon(kind, rng.uniform(r, w - r), rng.uniform(r, h - r), r, rng)
            _draw(image, poly, kind)
            _write_image(root / kind / f"{kind}_{i:03d}.png", image)
    return root
