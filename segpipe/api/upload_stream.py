"""Image uploads: a multipart/form-data body streamed straight into an upload folder, file by file.

Uploads are untrusted, so while the body streams in:

- each file part is written to disk as it arrives and refused (413) the moment it passes the
  per-file limit, so nothing over the limit is ever buffered or kept;
- at most ``max_files`` files (413 past that), header bytes are capped, and non-file
  form fields are refused (422): the endpoint takes images only;
- a file's type is decided by its content, not its name or declared type: Pillow identifies it from
  its header (415 naming the file when it is not one of `IMAGE_FORMATS`);
- file names lose any path and every character outside ``[A-Za-z0-9_-]``; the suffix comes from the
  detected format, and a stem already used in the upload gets ``-2``, ``-3``, … (a predict job keys an
  image by its stem, so two files must not share one).

Files are written under a hidden ``.part-N`` name and renamed when complete and checked, so a
half-written file never looks like an image to a job reading the folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from segpipe.api.errors import ApiError
from segpipe.data.admission import ImageLimits, ImageRefused, admit_file

MAX_HEADER_BYTES = 16 * 1024
# Pillow format name → the suffix the stored file gets (all of them readable by segpipe.data.images).
IMAGE_FORMATS = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "WEBP": ".webp",
    "GIF": ".gif",
}
_ACCEPTED = "PNG, JPEG, BMP, TIFF, WebP, GIF"


@dataclass(frozen=True)
class StoredImage:
    filename: str
    stored_as: str
    image_key: str
    format: str
    width: int
    height: int
    bytes: int


def multipart_boundary(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data Content-Type; 415 for another media type, 400 without one."""
    media, params = parse_options_header(content_type or "")
    if media != b"multipart/form-data":
        shown = media.decode("latin-1") or "none"
        raise ApiError(415, f"uploads are multipart/form-data with image files; got Content-Type {shown}")
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "multipart/form-data Content-Type has no boundary")
    return boundary


def safe_stem(filename: str) -> str:
    """The last path component of ``filename`` without its suffix, reduced to ``[A-Za-z0-9_-]`` (≤ 100 chars)."""
    base = re.split(r"[\\/]", filename)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")[:100]
    return cleaned or "image"


def identify_image(path: Path, filename: str, limits: ImageLimits | None = None) -> tuple[str, int, int]:
    """(Pillow format, width, height) read from the file's header by the one image admission every door
    uses (`segpipe.data.admission`); `ApiError` 415/413 naming ``filename`` and the limit."""
    try:
        admitted = admit_file(path, limits, name=f"file {filename!r}")
    except ImageRefused as exc:
        if exc.code == "image-unreadable":
            raise ApiError(415, f"file {filename!r} is not an image (accepted: {_ACCEPTED})") from None
        raise ApiError(413, str(exc)) from None
    if admitted.format not in IMAGE_FORMATS:
        raise ApiError(415, f"file {filename!r} is a {admitted.format} image; accepted: {_ACCEPTED}")
    return admitted.format, admitted.width, admitted.height


class _Part:
    def __init__(self, filename: str, path: Path) -> None:
        self.filename = filename
        self.path = path
        self.size = 0
        self.file: IO[bytes] = path.open("xb")


class MultipartImageWriter:
    """Feed a multipart body with `write` (chunks as they arrive), then call `finish` for the stored images.

    Any refusal is an `ApiError`; the caller then calls `abort` and removes ``folder``. Not thread-safe:
    one request's chunks in order (from any thread).
    """

    def __init__(self, folder: Path, boundary: bytes, max_file_bytes: int, max_files: int,
                 limits: ImageLimits | None = None) -> None:
        self.folder = folder
        self.limits = limits
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.stored: list[StoredImage] = []
        self._stems: set[str] = set()
        self._part: _Part | None = None
        self._headers: dict[bytes, bytes] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._header_bytes = 0
        self._files = 0
        callbacks: Any = {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
        }
        self._parser = MultipartParser(boundary, callbacks)

    def write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise ApiError(400, f"the multipart body does not parse: {exc}") from None

    def finish(self) -> list[StoredImage]:
        try:
            self._parser.finalize()
        except FormParserError as exc:
            raise ApiError(400, f"the multipart body does not parse: {exc}") from None
        if self._part is not None:
            raise ApiError(400, "the multipart body ended in the middle of a file")
        if not self.stored:
            raise ApiError(422, "the upload holds no files; send images as file parts of multipart/form-data")
        return list(self.stored)

    def abort(self) -> None:
        """Close the file being written, if any (the caller removes the folder)."""
        if self._part is not None:
            self._part.file.close()
            self._part = None

    # -- parser callbacks -------------------------------------------------------------------------

    def _on_part_begin(self) -> None:
        self._headers = {}

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            raise ApiError(400, f"multipart part headers are larger than {MAX_HEADER_BYTES} bytes in all")

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in options:
            raise ApiError(422, f"form field {name!r} is not a file; this endpoint takes image files only")
        self._files += 1
        if self._files > self.max_files:
            raise ApiError(413, f"too many files in one upload: at most {self.max_files}")
        filename = options[b"filename"].decode("utf-8", "replace")
        self._part = _Part(filename, self.folder / f".part-{self._files}")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if part is None:  # data of a refused part never arrives: the refusal raised
            return
        part.size += end - start
        if part.size > self.max_file_bytes:
            raise ApiError(
                413, f"file {part.filename!r} is larger than the limit of {self.max_file_bytes / 2**20:g} MB per file"
            )
        part.file.write(data[start:end])

    def _on_part_end(self) -> None:
        part = self._part
        if part is None:
            return
        part.file.close()
        self._part = None
        fmt, width, height = identify_image(part.path, part.filename, self.limits)
        stem = self._unique(safe_stem(part.filename))
        target = self.folder / (stem + IMAGE_FORMATS[fmt])
        part.path.rename(target)
        self.stored.append(StoredImage(part.filename, target.name, stem, fmt, width, height, part.size))

    def _unique(self, stem: str) -> str:
        candidate, n = stem, 1
        while candidate.lower() in self._stems:  # case-insensitive: some filesystems are
            n += 1
            candidate = f"{stem}-{n}"
        self._stems.add(candidate.lower())
        return candidate
