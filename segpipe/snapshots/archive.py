"""Reading an export archive someone uploaded: a zip whose names and sizes are not trusted.

Member names must be relative paths that stay inside the archive (no ``..``, no absolute or drive
paths); the members and their declared uncompressed sizes are capped before anything is read, and a
member that inflates past its declared size is refused while it is read (zip bombs lie about both).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath
from typing import Self

import numpy as np
from PIL import Image

from segpipe.errors import DataError

MAX_MEMBERS = 200_000
MAX_TOTAL_BYTES = 8 * 1024**3  # uncompressed, all members together
MAX_IMAGE_PIXELS = 100_000_000


class Archive:
    """The members of one zip by their POSIX names (directories left out)."""

    def __init__(self, path: Path, *, max_total_bytes: int = MAX_TOTAL_BYTES) -> None:
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as e:
            raise DataError(f"{path}: not a readable zip archive ({e})") from None
        infos = [i for i in self._zip.infolist() if not i.is_dir()]
        if len(infos) > MAX_MEMBERS:
            raise DataError(f"{path}: {len(infos)} members, more than the {MAX_MEMBERS} allowed")
        total = sum(i.file_size for i in infos)
        if total > max_total_bytes:
            raise DataError(f"{path}: {total} bytes uncompressed, more than the {max_total_bytes} allowed")
        self._infos = {}
        for info in infos:
            name = PurePosixPath(info.filename)
            if name.is_absolute() or ".." in name.parts or ":" in info.filename or "\\" in info.filename:
                raise DataError(f"{path}: member {info.filename!r} would land outside the archive's folder")
            self._infos[name.as_posix()] = info

    @property
    def names(self) -> list[str]:
        return sorted(self._infos)

    def has(self, name: str) -> bool:
        return name in self._infos

    def read(self, name: str) -> bytes:
        info = self._infos.get(name)
        if info is None:
            raise DataError(f"{self.path}: no member {name!r}")
        with self._zip.open(info) as member:
            data = member.read(info.file_size + 1)
        if len(data) > info.file_size:
            raise DataError(f"{self.path}: member {name!r} inflates past its declared {info.file_size} bytes")
        return data

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def image_size(data: bytes, where: str) -> tuple[int, int]:
    """(width, height) from the image header, without decoding; DataError naming ``where`` otherwise."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (OSError, Image.DecompressionBombError) as e:
        raise DataError(f"{where}: not a readable image ({e})") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise DataError(f"{where}: {width}×{height} pixels, more than the {MAX_IMAGE_PIXELS} allowed")
    return width, height


def decode_png(data: bytes, where: str, mode: str) -> np.ndarray:
    """A mask PNG's pixels in ``mode`` ("RGB" or "L"), its size checked first."""
    image_size(data, where)
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert(mode))
