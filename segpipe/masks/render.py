"""Pictures to look at: prediction / ground-truth overlays, grids of them, training curves, confusion
matrices.

Overlays are drawn with numpy and OpenCV on the RGB image (uint8, H×W×3) and written as PNG/JPEG.
Plots use matplotlib's object API with the Agg canvas only (no pyplot, no global backend switch), so
they are safe in worker processes without a display. Colours are stable: label l always gets
``label_colour(l)``, whatever else is in the picture.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segpipe.data.categories import CategoryMap
from segpipe.data.sample import Sample
from segpipe.masks.encode import rle_to_mask
from segpipe.prediction import Prediction

# Bright, mutually distinct colours (RGB) for labels 1, 2, ...; label 0 (background) is never tinted.
_COLOURS = np.array(
    [
        (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
        (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190),
        (0, 128, 128), (230, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
        (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
    ],
    dtype=np.uint8,
)  # fmt: skip
_IGNORE_COLOUR = (200, 200, 200)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def label_colour(label: int) -> tuple[int, int, int]:
    """RGB colour of a contiguous label (1..K); cycles after 20 labels."""
    r, g, b = _COLOURS[(int(label) - 1) % len(_COLOURS)]
    return int(r), int(g), int(b)


# ---------------------------------------------------------------------------------------------
# overlays


def overlay(
    image: np.ndarray,
    target: Prediction | Sample,
    category_map: CategoryMap,
    alpha: float = 0.5,
    scale: int = 1,
    score_threshold: float = 0.0,
) -> np.ndarray:
    """Draw a prediction or a ground-truth Sample on its image; returns (H·scale)×(W·scale)×3 uint8 RGB.

    - label map (semantic / binary): each class tinted with its colour, outlined, and a legend of the
      classes present; ignore pixels (255) in light grey;
    - instances / Sample masks and boxes: masks tinted per class (higher scores drawn last, on top),
      outlined, boxes with "name score" captions; instances below ``score_threshold`` are skipped;
    - classification: a caption with the class name (and its score for a prediction).

    ``image`` is H×W×3 uint8 RGB of the same size as the prediction (original pixels) or sample.
    ``scale`` (integer ≥ 1) enlarges the picture before drawing so text stays legible on small images.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be H×W×3 uint8, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    size = (target.height, target.width) if isinstance(target, Prediction) else target.size
    if tuple(size) != (h, w):
        kind = type(target).__name__.lower()
        raise ValueError(f"image {target.image_id}: image is {h}×{w}, its {kind} {size[0]}×{size[1]}")
    scale = max(int(scale), 1)
    canvas = _upscale(image, scale).copy()
    text = _TextStyle.for_canvas(canvas)
    if target.label_map is not None:
        _draw_label_map(canvas, _upscale(target.label_map, scale), category_map, alpha, text)
    objects = _objects(target, score_threshold)
    # all masks first, then all boxes and captions, so no tint ever covers a caption; both passes go
    # from low to high score, leaving the most confident object on top
    for mask, _, label, _ in objects:
        if mask is not None and mask.any():
            region = _upscale(mask, scale).astype(bool)
            _tint(canvas, region, label_colour(label), alpha)
            _outline(canvas, region, label_colour(label))
    for _, box, label, score in objects:
        _draw_box(canvas, box, label, score, category_map, scale, text)
    if target.class_id is not None:
        score = None
        if isinstance(target, Prediction) and target.scores is not None:
            score = float(target.scores[target.class_id])
        _caption(canvas, _name_score(category_map, target.class_id, score), (4, 4), (40, 40, 40), text)
    return canvas


def save_overlay(
    image: np.ndarray,
    target: Prediction | Sample,
    category_map: CategoryMap,
    path: str | Path,
    alpha: float = 0.5,
    min_size: int = 256,
    score_threshold: float = 0.0,
) -> Path:
    """``overlay`` written to ``path`` (PNG or JPEG by suffix), enlarged by an integer factor until
    the shorter side is at least ``min_size`` pixels."""
    scale = _scale_for(image.shape[:2], min_size)
    picture = overlay(image, target, category_map, alpha=alpha, scale=scale, score_threshold=score_threshold)
    return _write_rgb(path, picture)


def overlay_grid(
    items: Sequence[tuple[np.ndarray, Prediction | Sample]],
    category_map: CategoryMap,
    path: str | Path,
    cols: int = 4,
    tile: int = 256,
    alpha: float = 0.5,
    score_threshold: float = 0.0,
    captions: Sequence[str] | None = None,
) -> Path:
    """Overlays of ``(image, prediction or sample)`` pairs in a grid of ``cols`` columns, each fitted
    into a cell ``tile`` pixels wide (and at most as high) under a caption (``captions[i]``, or its
    image id); written to ``path``. A `Sample` is drawn whole; ``score_threshold`` applies to
    predictions."""
    if not items:
        raise ValueError("overlay_grid needs at least one (image, prediction) pair")
    cols = max(1, min(int(cols), len(items)))
    rows = math.ceil(len(items) / cols)
    pictures = []
    for image, target in items:
        # draw at the largest integer scale that still fits, so captions are not shrunk afterwards
        scale = max(1, tile // max(image.shape[:2]))
        threshold = score_threshold if isinstance(target, Prediction) else 0.0
        picture = overlay(image, target, category_map, alpha=alpha, scale=scale, score_threshold=threshold)
        ph, pw = picture.shape[:2]
        f = min(tile / ph, tile / pw)
        interpolation = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
        fitted_size = (max(1, round(pw * f)), max(1, round(ph * f)))
        pictures.append(cv2.resize(picture, fitted_size, interpolation=interpolation))
    caption_h = 22
    cell_h = max(p.shape[0] for p in pictures) + caption_h  # no empty bands for landscape images
    sheet = np.full((rows * cell_h, cols * tile, 3), 30, np.uint8)
    for n, ((_, target), picture) in enumerate(zip(items, pictures, strict=False)):
        top, left = (n // cols) * cell_h, (n % cols) * tile
        y0 = top + caption_h
        x0 = left + (tile - picture.shape[1]) // 2
        sheet[y0 : y0 + picture.shape[0], x0 : x0 + picture.shape[1]] = picture
        caption = captions[n] if captions is not None else f"image {target.image_id}"
        cv2.putText(sheet, caption, (left + 6, top + 16), _FONT, 0.45, (235, 235, 235), 1, cv2.LINE_AA)
    return _write_rgb(path, sheet)


class _TextStyle:
    def __init__(self, scale: float, thickness: int) -> None:
        self.scale = scale
        self.thickness = thickness

    @classmethod
    def for_canvas(cls, canvas: np.ndarray) -> _TextStyle:
        short = min(canvas.shape[:2])
        scale = float(np.clip(short / 700, 0.35, 1.0))
        return cls(scale, 1 if scale < 0.7 else 2)


def _draw_label_map(
    canvas: np.ndarray, label_map: np.ndarray, category_map: CategoryMap, alpha: float, text: _TextStyle
) -> None:
    present = [int(v) for v in np.unique(label_map) if v != 0]
    for label in present:
        region = label_map == label
        colour = _IGNORE_COLOUR if label == 255 else label_colour(label)
        _tint(canvas, region, colour, alpha)
        _outline(canvas, region, colour)
    # legend: one swatch per class present, top-left, in label order
    y = 4
    for label in present:
        name = "ignore" if label == 255 else _safe_name(category_map, label)
        colour = _IGNORE_COLOUR if label == 255 else label_colour(label)
        y += _caption(canvas, name, (4, y), colour, text) + 2


_Object = tuple[np.ndarray | None, Any, int, float | None]


def _objects(target: Prediction | Sample, score_threshold: float) -> list[_Object]:
    """(mask or None, xyxy box, label, score or None) per object, in drawing order (ascending score)."""
    if isinstance(target, Prediction):
        instances = sorted((i for i in target.instances if i.score >= score_threshold), key=lambda i: i.score)
        return [
            (rle_to_mask(i.rle) if i.rle is not None else None, i.box, int(i.label), float(i.score))
            for i in instances
        ]
    has_masks = len(target.masks) == len(target.labels)
    return [
        (target.masks[i] if has_masks else None, target.boxes[i], int(label), None)
        for i, label in enumerate(target.labels)
    ]


def _draw_box(
    canvas: np.ndarray,
    box: Sequence[float],
    label: int,
    score: float | None,
    category_map: CategoryMap,
    scale: int,
    text: _TextStyle,
) -> None:
    colour = label_colour(label)
    x1, y1, x2, y2 = (round(float(v) * scale) for v in box)
    cv2.rectangle(canvas, (x1, y1), (max(x2 - 1, x1), max(y2 - 1, y1)), colour, text.thickness, cv2.LINE_AA)
    label_text = _name_score(category_map, label, score)
    (_, th), base = cv2.getTextSize(label_text, _FONT, text.scale, text.thickness)
    # caption above the box, or inside its top edge when the box touches the image top
    y = y1 - th - base - 4 if y1 - th - base - 4 >= 0 else y1
    _caption(canvas, label_text, (x1, y), colour, text)


def _caption(
    canvas: np.ndarray, label: str, corner: tuple[int, int], colour: tuple[int, int, int], text: _TextStyle
) -> int:
    """Text on a filled box of ``colour`` with its top-left at ``corner``; returns the box height."""
    (tw, th), base = cv2.getTextSize(label, _FONT, text.scale, text.thickness)
    x, y = corner
    x = min(max(x, 0), max(canvas.shape[1] - tw - 4, 0))
    box_h = th + base + 4
    cv2.rectangle(canvas, (x, y), (x + tw + 4, y + box_h), colour, -1)
    # dark text on light colours, white on dark ones (perceived luminance)
    ink = (0, 0, 0) if 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > 140 else (255, 255, 255)
    cv2.putText(canvas, label, (x + 2, y + th + 2), _FONT, text.scale, ink, text.thickness, cv2.LINE_AA)
    return box_h


def _tint(canvas: np.ndarray, region: np.ndarray, colour: tuple[int, int, int], alpha: float) -> None:
    blended = canvas[region].astype(np.float32) * (1 - alpha) + np.array(colour, np.float32) * alpha
    canvas[region] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def _outline(canvas: np.ndarray, region: np.ndarray, colour: tuple[int, int, int]) -> None:
    # a darker edge than the fill, so touching instances of one class stay apart and the outline
    # shows even where the object itself has the tint's colour
    edge = tuple(int(c * 0.4) for c in colour)
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, edge, 1, cv2.LINE_AA)


def _name_score(category_map: CategoryMap, label: int, score: float | None) -> str:
    name = _safe_name(category_map, label)
    return name if score is None else f"{name} {score:.2f}"


def _safe_name(category_map: CategoryMap, label: int) -> str:
    try:
        return category_map.name_of_label(int(label))
    except IndexError:
        return f"label {label}"


def _upscale(array: np.ndarray, scale: int) -> np.ndarray:
    if scale == 1:
        return array
    return np.repeat(np.repeat(array, scale, axis=0), scale, axis=1)


def _scale_for(size: tuple[int, int], min_size: int) -> int:
    short = max(min(int(size[0]), int(size[1])), 1)
    return max(1, math.ceil(min_size / short)) if short < min_size else 1


def _write_rgb(path: str | Path, rgb: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write image (suffix {path.suffix!r})")
    return path


# ---------------------------------------------------------------------------------------------
# plots

# counters and clocks, not metrics
_NOT_PLOTTED = {
    "epoch", "step", "global_step", "iteration", "time", "timestamp", "elapsed", "num_images", "num_samples"
}  # fmt: skip


def read_metric_records(metrics_jsonl_path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a metrics JSONL file; blank, truncated or non-object lines are skipped
    (a log being written by a running job may end mid-line)."""
    records: list[dict[str, Any]] = []
    path = Path(metrics_jsonl_path)
    if not path.is_file():
        return records
    for raw_line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw_line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def metric_curves(records: list[dict[str, Any]]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """metric → split → (epochs, per-epoch mean). Records without an epoch take the last one seen in
    their split (or their position when none was)."""
    sums: dict[str, dict[str, dict[float, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    last_epoch: dict[str, float] = {}
    seen: dict[str, int] = defaultdict(int)
    for record in records:
        split = str(record.get("split", "train"))
        seen[split] += 1
        epoch = record.get("epoch")
        if isinstance(epoch, int | float) and _is_number(epoch):
            last_epoch[split] = float(epoch)
        x = last_epoch.get(split, float(seen[split]))
        for key, value in record.items():
            if key in _NOT_PLOTTED or not _is_number(value):
                continue
            sums[key][split][x].append(float(value))
    series: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for key, by_split in sums.items():
        series[key] = {}
        for split, by_epoch in by_split.items():
            xs = sorted(by_epoch)
            series[key][split] = (xs, [float(np.mean(by_epoch[x])) for x in xs])
    return series


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def plot_training_curves(metrics_jsonl_path: str | Path, out_png: str | Path) -> Path:
    """Training curves from a metrics JSONL log (one JSON object per line, e.g.
    ``{"epoch": 1, "step": 10, "split": "train", "loss": 0.5}``, ``{"epoch": 1, "split": "val", "miou": 0.3}``),
    grouped into panels as `segpipe.masks.charts.curve_panels` says. Returns ``out_png``."""
    from segpipe.masks.charts import plot_curves

    return plot_curves(metrics_jsonl_path, out_png)[0]


def plot_confusion_matrix(
    cm: np.ndarray | Sequence[Sequence[int]],
    class_names: Sequence[str],
    out_png: str | Path,
    normalize: bool = True,
    title: str = "confusion matrix",
) -> Path:
    """K×K confusion matrix (rows = true class, columns = predicted) as a heat map with class names.

    ``normalize`` divides each row by its total (so the diagonal is per-class recall); rows with no
    samples stay 0. Cell values are printed when K ≤ 25.
    """
    from matplotlib.figure import Figure

    matrix = np.asarray(cm, dtype=np.float64)
    k = matrix.shape[0]
    if matrix.shape != (k, k) or len(class_names) != k:
        raise ValueError(f"confusion matrix {matrix.shape} does not match {len(class_names)} class names")
    if normalize:
        totals = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    side = min(max(4.0, 0.55 * k + 2.5), 30.0)
    fig = Figure(figsize=(side + 1.0, side), dpi=100, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    top = 1.0 if normalize else max(float(matrix.max()), 1.0)
    im = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=top)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title + (" (row-normalised)" if normalize else ""))
    if k <= 25:
        for i in range(k):
            for j in range(k):
                value = matrix[i, j]
                label = f"{value:.2f}" if normalize else f"{int(value)}"
                ink = "white" if value > top / 2 else "black"
                ax.text(j, i, label, ha="center", va="center", fontsize=8, color=ink)
    return _save_figure(fig, out_png)


def _save_figure(fig: Any, out_png: str | Path) -> Path:
    path = Path(out_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
