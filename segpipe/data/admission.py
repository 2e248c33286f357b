"""Image admission: the one check every image passes before anything decodes it.

Every door — uploads, files in the data roots, object-store copies in a worker's cache, Label Studio
task images, evaluation, training, prediction, validation — calls `admit_file` (or `admit_bytes` for
bytes still in memory). It reads the file's size and, from the header alone (Pillow's lazy open parses
the header and stops), its width × height, and refuses what is over the limits *before* a decoder
allocates the pixel buffer. A valid 875 KB PNG can declare 30000 × 30000 pixels: decoding it would
need 2.7 GB; admitting it costs a few KB.

Limits come from the settings (`SEGPIPE_MAX_IMAGE_MEGAPIXELS`, `SEGPIPE_MAX_IMAGE_MB`); Pillow's own
decompression-bomb limit is set to the same pixel count, so the two can never disagree.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from segpipe.errors import DataError

if TYPE_CHECKING:
    from segpipe.settings import Settings

MEGAPIXEL = 1_000_000
MB = 1024 * 1024


class ImageRefused(DataError):
    """The image is over a limit (pixels or bytes), or its header is not one of an image.

    ``code`` is ``image-too-large`` (pixels), ``image-too-big`` (bytes) or ``image-unreadable``.
    """

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int
    max_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> ImageLimits:
        return cls(int(settings.max_image_megapixels * MEGAPIXEL), int(settings.max_image_mb * MB))

    @classmethod
    def current(cls) -> ImageLimits:
        """The limits of this process's settings (``SEGPIPE_MAX_IMAGE_*``)."""
        from segpipe.settings import get_settings

        return cls.of(get_settings())

    def describe(self) -> str:
        return f"{self.max_pixels / MEGAPIXEL:g} megapixels, {self.max_bytes / MB:g} MB"


@dataclass(frozen=True)
class AdmittedImage:
    """What the header said: Pillow's format name, stored width and height (before EXIF rotation), bytes."""

    format: str
    width: int
    height: int
    bytes: int


def admit_file(path: str | Path, limits: ImageLimits | None = None, *, name: str | None = None,
               what: str = "image") -> AdmittedImage:
    """Admit an image file by its size and header; `ImageRefused` naming ``name`` (default: the path)
    and the limit. ``what`` names the file's role in the message ("image", "mask")."""
    limits = limits or ImageLimits.current()
    path = Path(path)
    shown = name or str(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageRefused(f"{shown}: cannot read image file ({e.strerror or e})", "image-unreadable") from None
    _check_bytes(size, limits, shown)
    with path.open("rb") as fh:
        return _admit_header(fh, size, limits, shown, what)


def admit_bytes(content: bytes, name: str, limits: ImageLimits | None = None) -> AdmittedImage:
    """Admit an image held in memory (a fetched Label Studio task image) before it is written or decoded."""
    limits = limits or ImageLimits.current()
    _check_bytes(len(content), limits, name)
    return _admit_header(io.BytesIO(content), len(content), limits, name)


def _check_bytes(size: int, limits: ImageLimits, shown: str) -> None:
    if size > limits.max_bytes:
        raise ImageRefused(
            f"{shown}: image file is {size / MB:.1f} MB, over the {limits.max_bytes / MB:g} MB limit "
            "(SEGPIPE_MAX_IMAGE_MB)", "image-too-big")


def _admit_header(fh: IO[bytes], size: int, limits: ImageLimits, shown: str, what: str = "image") -> AdmittedImage:
    from PIL import Image, UnidentifiedImageError

    # Pillow's own bomb check (a warning above MAX_IMAGE_PIXELS, an error above twice that) uses the same
    # limit; ours below is the one that decides, and it says which limit and which setting.
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fh) as im:  # lazy: parses the header, decodes nothing
                fmt, (width, height) = im.format or "unknown", im.size
    except Image.DecompressionBombError as e:  # over twice the limit: Pillow stops at the header too
        found = re.search(r"\((\d+) pixels\)", str(e))
        pixels = f"{int(found.group(1)) / MEGAPIXEL:.1f}" if found else f"more than {2 * limits.max_pixels / MEGAPIXEL:g}"
        raise ImageRefused(f"{shown}: image is {pixels} megapixels, over the {limits.max_pixels / MEGAPIXEL:g}-megapixel "
                           "limit (SEGPIPE_MAX_IMAGE_MEGAPIXELS)", "image-too-large") from None
    except Exception as e:  # noqa: BLE001 - Pillow raises many types on hostile headers; all mean "not admitted"
        # Pillow's "cannot identify image file <_io.BufferedReader name='/abs/path'>" repeats the path
        why = ("empty file" if size == 0 else "not an image format segpipe reads" if isinstance(e, UnidentifiedImageError)
               else f"{type(e).__name__}: {e}")
        raise ImageRefused(f"{shown}: cannot decode {what} ({why})", "image-unreadable") from None
    if width * height > limits.max_pixels:
        raise ImageRefused(
            f"{shown}: image is {width}×{height} = {width * height / MEGAPIXEL:.1f} megapixels, over the "
            f"{limits.max_pixels / MEGAPIXEL:g}-megapixel limit (SEGPIPE_MAX_IMAGE_MEGAPIXELS)", "image-too-large")
    return AdmittedImage(fmt, width, height, size)
