"""Decoding image files into the Sample contract's H×W×3 uint8 RGB.

Every file is admitted first (`segpipe.data.admission`: bytes and pixels from the header, before any
decoder allocates), so no door can make a worker decode an image over the configured limits.

OpenCV decodes (fast, applies EXIF orientation); Pillow is the fallback for what OpenCV cannot read
(GIF, palette and some TIFF variants). Grayscale is replicated to 3 channels, alpha is dropped and
16-bit images are scaled to 8-bit.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from segpipe.data.admission import ImageLimits, admit_file
from segpipe.errors import DataError
from segpipe.paths import Roots, check_read

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")

cv2.setNumThreads(1)  # loader workers parallelise across images; nested OpenCV threads only contend


def read_image(path: str | Path, roots: Roots | None = None, limits: ImageLimits | None = None) -> np.ndarray:
    """Read an image file as H×W×3 uint8 RGB, EXIF orientation applied. Raises DataError naming the file
    (`ImageRefused` when it is over ``limits``, default the settings'). The file is confined to `roots`
    (default: the active roots, `segpipe.paths`) after resolving symlinks."""
    path = check_read(path, what="image", roots=roots)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    admit_file(path, limits)
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is not None:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return _read_with_pillow(path)


def _read_with_pillow(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            im = ImageOps.exif_transpose(opened)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                top = 65535.0 if im.mode.startswith("I;16") else max(float(arr.max()), 1.0)
                arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
                return np.repeat(arr[:, :, None], 3, axis=2)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot decode image ({e})") from None


def read_mask(path: str | Path, roots: Roots | None = None) -> np.ndarray:
    """Read a label-map PNG as H×W uint8 exactly as stored (no colour conversion, no EXIF rotation).

    Palette PNGs give their indices; 16-bit masks must hold values ≤ 255. Confined like `read_image`.
    """
    path = check_read(path, what="mask", roots=roots)
    if not path.is_file():
        raise DataError(f"{path}: mask file not found")
    admit_file(path, what="mask")
    mask = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if mask is None or mask.ndim == 3:
        mask = _read_mask_with_pillow(path)
    if mask.dtype != np.uint8:
        if mask.max(initial=0) > 255:
            raise DataError(f"{path}: mask values up to {int(mask.max())} do not fit a uint8 label map")
        mask = mask.astype(np.uint8)
    return mask


def _read_mask_with_pillow(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in ("RGB", "RGBA"):
                arr = np.asarray(im)
                if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])):
                    raise DataError(f"{path}: colour mask; save label maps as grayscale or palette PNGs")
                return arr[..., 0].copy()
            return np.asarray(im).copy()  # L, P (palette indices), I;16
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: cannot decode mask ({e})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) as stored in the file header, after EXIF orientation; no full decode.
    `ImageRefused` for a file over the limits."""
    from PIL import Image

    admit_file(path)
    with Image.open(path) as im:
        w, h = im.size
        # Pillow's PNG getexif() decodes the whole image; orientation tags live in JPEG/TIFF/WebP
        orientation = im.getexif().get(0x0112, 1) if im.format in ("JPEG", "MPO", "TIFF", "WEBP") else 1
    # EXIF orientations 5–8 are transposed: the decoded image swaps width and height
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)
