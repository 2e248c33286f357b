"""Tiles → one PNG: per-tile normalisation, nearest-neighbour resizing, a grid with a caption band.

Pure NumPy + OpenCV. Tiles are H×W (grayscale) or H×W×3 (RGB) float arrays of any range; the grid
is H×W×3 uint8 RGB. Text is drawn with OpenCV's Hershey font, so captions are ASCII.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

GAP = 3  # pixels between tiles
GAP_VALUE = 255  # white separators
CAPTION_HEIGHT = 24


def normalise(tile: np.ndarray, constant: int = 128) -> np.ndarray:
    """Min–max scale to uint8 0..255 (over the whole tile, channels together so colours keep their
    balance). A constant tile has no contrast to show: it becomes `constant` everywhere."""
    tile = np.asarray(tile, dtype=np.float64)
    low, high = float(tile.min()), float(tile.max())
    if not np.isfinite(low) or not np.isfinite(high) or high - low < 1e-12:
        return np.full(tile.shape, constant, np.uint8)
    return np.round((tile - low) / (high - low) * 255.0).astype(np.uint8)


def fit_tile(tile: np.ndarray, min_side: int, max_side: int) -> np.ndarray:
    """Resize a uint8 tile so its longer side lies in [min_side, max_side]: enlarge by an integer
    factor with nearest neighbour (pixels stay crisp squares: a 3×3 filter stays 9 blocks), shrink
    with area averaging."""
    h, w = tile.shape[:2]
    longer = max(h, w)
    if longer < min_side:
        factor = max(1, min(math.ceil(min_side / longer), max_side // longer))
        return cv2.resize(tile, (w * factor, h * factor), interpolation=cv2.INTER_NEAREST)
    if longer > max_side:
        scale = max_side / longer
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return cv2.resize(tile, size, interpolation=cv2.INTER_AREA)
    return tile


def to_rgb(tile: np.ndarray) -> np.ndarray:
    return np.repeat(tile[:, :, None], 3, axis=2) if tile.ndim == 2 else tile


def colourise(tile: np.ndarray) -> np.ndarray:
    """uint8 H×W → H×W×3 RGB through the viridis map (dark = low, yellow = high activation)."""
    return cv2.cvtColor(cv2.applyColorMap(tile, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)


def grid(tiles: Sequence[np.ndarray], columns: int | None = None, caption: str = "", gap: int = GAP) -> np.ndarray:
    """Lay same-size uint8 tiles (H×W or H×W×3) out row by row, `columns` wide (default ≈ √n), with
    `gap`-pixel white separators and, if given, a caption band on top. Returns H×W×3 uint8 RGB."""
    if not tiles:
        raise ValueError("grid needs at least one tile")
    rgb = [to_rgb(t) for t in tiles]
    h, w = rgb[0].shape[:2]
    cols = columns or math.ceil(math.sqrt(len(rgb)))
    rows = math.ceil(len(rgb) / cols)
    out = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, 3), GAP_VALUE, np.uint8)
    for i, tile in enumerate(rgb):
        r, c = divmod(i, cols)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        out[y : y + h, x : x + w] = tile
    return with_caption(out, caption) if caption else out


def with_caption(image: np.ndarray, caption: str) -> np.ndarray:
    """A white band with black `caption` (ASCII) above `image`; the band is at least as wide as the text."""
    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1
    (text_w, _), _ = cv2.getTextSize(caption, font, scale, thickness)
    width = max(image.shape[1], text_w + 8)
    out = np.full((image.shape[0] + CAPTION_HEIGHT, width, 3), 255, np.uint8)
    out[CAPTION_HEIGHT:, : image.shape[1]] = image
    cv2.putText(out, caption, (4, CAPTION_HEIGHT - 8), font, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return out


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an H×W×3 uint8 RGB (or H×W gray) image as PNG, creating parent folders. OSError on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode a {image.shape} {image.dtype} image as PNG")
    path.write_bytes(data.tobytes())  # np.fromfile/tofile style: works for non-ASCII paths too
    return path
