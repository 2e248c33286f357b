"""What every dataset check shares: the `Issue` / `Report` types and the image-file inspection.

A `Report` is a flat list of issues. Each issue is an ``error`` (the data is wrong: training on it
would fail or learn garbage) or a ``warning`` (legal but worth a look). Issues carry the file, the
image id and the annotation id they concern, so a source can skip exactly the broken parts when a
job sets ``data.skip_invalid: true``:

- an error with an ``annotation_id`` drops that annotation;
- an error with an ``image_id`` and no ``annotation_id`` drops that image (and its annotations);
- an error with neither (unreadable JSON, duplicate category ids, empty dataset, ...) concerns the
  whole dataset and cannot be skipped: `Report.dataset_errors`.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from segpipe.data.images import IMAGE_SUFFIXES
from segpipe.errors import DataError

Severity = Literal["error", "warning"]
ImageKey = int | str

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Issue:
    """One finding. `message` says what is wrong in plain words and names the image / annotation ids
    (and the image file, for image-file issues); `file` is the file the issue was found in."""

    severity: Severity
    code: str
    message: str
    file: str | None = None
    image_id: ImageKey | None = None
    annotation_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        return f"{self.severity}: {where}{self.message} [{self.code}]"


@dataclass
class Report:
    """The issues found in one dataset (one split), plus how much was checked (`checked`)."""

    source: str  # what was checked, in words: "COCO /data/instances.json"
    issues: list[Issue] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)  # e.g. {"images": 128, "annotations": 939}

    def error(self, code: str, message: str, *, file: str | Path | None = None,
              image_id: ImageKey | None = None, annotation_id: int | None = None) -> None:
        self.issues.append(Issue("error", code, message, _str(file), image_id, annotation_id))

    def warning(self, code: str, message: str, *, file: str | Path | None = None,
                image_id: ImageKey | None = None, annotation_id: int | None = None) -> None:
        self.issues.append(Issue("warning", code, message, _str(file), image_id, annotation_id))

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings allowed)."""
        return not self.errors

    @property
    def dataset_errors(self) -> list[Issue]:
        """Errors that name no image and no annotation: `skip_invalid` cannot route around them."""
        return [i for i in self.errors if i.image_id is None and i.annotation_id is None]

    def bad_image_ids(self) -> set[ImageKey]:
        """Images that `data.skip_invalid: true` drops: those with an image-level error."""
        return {i.image_id for i in self.errors if i.image_id is not None and i.annotation_id is None}

    def bad_annotation_ids(self) -> set[int]:
        """Annotations that `data.skip_invalid: true` drops: those with an annotation-level error."""
        return {i.annotation_id for i in self.errors if i.annotation_id is not None}

    def counts_by_code(self) -> dict[str, int]:
        return dict(Counter(i.code for i in self.issues).most_common())

    def summary(self) -> str:
        """One line: what was checked and how many errors / warnings."""
        checked = ", ".join(f"{n} {what}" for what, n in self.checked.items())
        found = f"{_plural(len(self.errors), 'error')}, {_plural(len(self.warnings), 'warning')}"
        return f"{self.source}: {checked + ': ' if checked else ''}{found}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: source, ok, counts (checked items, errors, warnings, per code) and all issues."""
        return {
            "source": self.source,
            "ok": self.ok,
            "checked": dict(self.checked),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "by_code": self.counts_by_code(),
            "issues": [i.to_dict() for i in self.issues],
        }

    def raise_for_errors(self, *, skip_invalid: bool = False, max_shown: int = 5) -> None:
        """Raise DataError listing the errors. With `skip_invalid` only dataset-level errors raise:
        the rest are the images / annotations a source skips (`bad_image_ids`, `bad_annotation_ids`)."""
        errors = self.dataset_errors if skip_invalid else self.errors
        if not errors:
            return
        shown = "; ".join(str(i) for i in errors[:max_shown])
        more = f" (and {len(errors) - max_shown} more)" if len(errors) > max_shown else ""
        raise DataError(f"{self.source}: {_plural(len(errors), 'error')}: {shown}{more}")


def _str(file: str | Path | None) -> str | None:
    return None if file is None else str(file)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def examples(items: Sequence[Any], limit: int = 5) -> str:
    """'a, b, c' or 'a, b, c, … (12 in all)': how aggregated warnings name their ids."""
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f", … ({len(items)} in all)" if len(items) > limit else "")


# ------------------------------------------------------------------------------------------ image files


@dataclass(frozen=True)
class ImageCheck:
    """What inspecting one image file found. `size` is (height, width) after EXIF orientation (what
    `read_image` returns), `stored_size` before it; both None when the header is unreadable.
    `problem` is (code, words) for an error, else None."""

    size: tuple[int, int] | None
    stored_size: tuple[int, int] | None
    problem: tuple[str, str] | None = None


def inspect_image(path: Path, decode: bool = True, roots: Sequence[Path] | None = None) -> ImageCheck:
    """Check one image file: it exists, its header parses, and (`decode`) all its pixel data decodes.

    Codes: ``image-outside-roots`` (it, or the symlink it is, resolves outside `roots`: never opened),
    ``image-missing``, ``image-too-large`` / ``image-too-big`` (over the admission limits, pixels / bytes),
    ``image-unreadable`` (header), ``image-truncated`` / ``image-corrupt``
    (pixel data). Call inside `strict_decoding()` so that Pillow does not pad truncated files.
    """
    from PIL import Image

    from segpipe.paths import PathNotAllowed, check_read

    try:
        path = check_read(path, what="image", roots=roots)
    except PathNotAllowed as e:
        return ImageCheck(None, None, ("image-outside-roots", str(e)))
    if not path.is_file():
        return ImageCheck(None, None, ("image-missing", "file not found"))
    from segpipe.data.admission import ImageRefused, admit_file

    try:  # the limits every door applies, from the header, before Pillow decodes a pixel
        admit_file(path)
    except ImageRefused as e:
        if e.code != "image-unreadable":  # an unreadable header is reported below, with Pillow's words
            return ImageCheck(None, None, (e.code, str(e).removeprefix(f"{path}: ")))
    # A validator must report, not crash: Pillow raises many types (OSError, SyntaxError,
    # DecompressionBombError, struct.error, ...) on hostile files, so any exception is a finding.
    try:
        with Image.open(path) as im:
            stored = (im.size[1], im.size[0])
            if decode:
                try:
                    im.load()
                except Exception as e:  # noqa: BLE001 - see above
                    code = "image-truncated" if "truncated" in str(e).lower() else "image-corrupt"
                    return ImageCheck(None, stored, (code, f"pixel data does not decode ({_why(e)})"))
            transposed = _orientation(im, decoded=decode) in (5, 6, 7, 8)
    except Exception as e:  # noqa: BLE001 - see above
        return ImageCheck(None, None, ("image-unreadable", f"not a readable image ({_why(e)})"))
    return ImageCheck((stored[1], stored[0]) if transposed else stored, stored)


def _orientation(im: Any, decoded: bool) -> int:
    """EXIF orientation (1..8) of an open Pillow image, the rule of `segpipe.data.images.image_size`
    (orientations 5–8 swap width and height), without its cost: for PNG, Pillow's getexif() decodes
    all pixel data to look for an eXIf chunk stored after them. Undecoded PNGs (the fast path) only
    consult an eXIf chunk stored before the pixel data."""
    from PIL import Image

    if decoded or im.format != "PNG":
        return int(im.getexif().get(0x0112, 1))
    exif = Image.Exif()
    if "exif" in im.info:
        exif.load(im.info["exif"])
    return int(exif.get(0x0112, 1))


def inspect_images(paths: Sequence[Path], decode: bool = True) -> list[ImageCheck]:
    """`inspect_image` for many files, in threads (Pillow and OpenCV release the GIL), in order."""
    from segpipe.paths import active_roots

    roots = active_roots()  # the pool's threads do not see the caller's context
    with strict_decoding():
        return parallel_map(lambda p: inspect_image(p, decode, roots), paths)


def parallel_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """map() over a few threads, results in input order. Decoding is I/O and C-bound, so threads
    overlap well; more than 8 only add contention on shared machines."""
    workers = min(8, os.cpu_count() or 1, max(1, len(items)))
    if workers == 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


@contextmanager
def strict_decoding() -> Iterator[None]:
    """Pillow's LOAD_TRUNCATED_IMAGES (process-global) off while inside, so truncated files raise."""
    from PIL import ImageFile

    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def _why(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in `folder` (suffix in IMAGE_SUFFIXES, any case; hidden files and folders skipped),
    sorted by path; `recursive` descends into sub-folders. The listing rule of segpipe.data.folders."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in found
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def stays_inside(relative: str) -> bool:
    """True when `relative` (a file name from a dataset) stays inside the folder it is joined to,
    lexically: not absolute and no '..' escaping it. Datasets can arrive over HTTP; a file name must
    not reach elsewhere."""
    if os.path.isabs(relative) or Path(relative).is_absolute():
        return False
    normal = os.path.normpath(relative)
    return normal != ".." and not normal.startswith(".." + os.sep)


# ------------------------------------------------------------------------------------ JSON value types


def is_int(v: Any) -> bool:
    """A JSON integer (bool is an int in Python, not in JSON)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A finite JSON number (Python's json accepts NaN and Infinity, COCO tools do not)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def kind_of(v: Any) -> str:
    """The JSON type of `v` in words, for messages: 'a string', 'a list', 'null', ..."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
             float: "a number", type(None): "null"}
    return names.get(type(v), type(v).__name__)
