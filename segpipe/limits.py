"""Every length limit on a name, key, label or path, in one table, checked at the door.

The filesystem's limits (a path component of 255 bytes, a path of 4096 bytes: Linux's NAME_MAX and
PATH_MAX) and the database's (the String columns of `segpipe.stores.models`) are read here once; the
doors — the API's routes, job submission (`segpipe.jobs.preflight`), dataset validation, the Label Studio
backend — check what comes in against this table and answer with the field, the length and the
limit (`LimitExceeded`, HTTP 422), instead of letting the OS or the database fail later with a
reason nobody can act on. The size limits that are settings (image pixels and bytes, uploads,
annotations) live in `segpipe.settings`; docs/operations.md lists both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import PurePath

from segpipe.errors import ConfigError

PATH_COMPONENT_BYTES = 255  # NAME_MAX on Linux filesystems (ext4, xfs, tmpfs); names are bytes (UTF-8)
PATH_BYTES = 4096  # PATH_MAX


class LimitExceeded(ConfigError):
    """A value longer than its limit; the message names the field, the length and the limit."""


@dataclass(frozen=True)
class TextLimit:
    name: str  # what a person calls it
    max_chars: int
    column: str  # the database column that holds it ("table.column")


# Every text value that comes from outside and ends in a length-limited column: kind → (table, column).
TEXT_COLUMNS: dict[str, tuple[str, str]] = {
    "image key": ("predictions", "image_key"),
    "class name": ("predictions", "category_name"),
    "model name": ("model_versions", "name"),
    "job id": ("jobs", "id"),
}


@cache
def text_limits() -> dict[str, TextLimit]:
    """`TEXT_COLUMNS` with each column's length read from the store's models (read lazily: the store
    imports this module for its path checks)."""
    from segpipe.stores.models import Base

    limits = {}
    for kind, (table, column) in TEXT_COLUMNS.items():
        length = Base.metadata.tables[table].c[column].type.length  # type: ignore[attr-defined]
        assert isinstance(length, int), f"{table}.{column} has no length"
        limits[kind] = TextLimit(kind, length, f"{table}.{column}")
    return limits


def check_text(field: str, value: str, kind: str) -> str:
    """``value`` unchanged, or `LimitExceeded` naming ``field`` (e.g. ``data.classes[3]``); ``kind`` is a
    key of `TEXT_COLUMNS`."""
    limit = text_limits()[kind]
    if len(value) > limit.max_chars:
        prefix = f"{field}: " if field else ""  # pydantic validators: the error's location names the field
        raise LimitExceeded(f"{prefix}the {limit.name} {_preview(value)} is {len(value)} characters; "
                            f"at most {limit.max_chars} fit ({limit.column})")
    return value


def check_path(field: str, path: str | os.PathLike[str]) -> None:
    """`LimitExceeded` naming ``field`` when a component of ``path`` is over 255 bytes or the whole over
    4096 bytes (UTF-8, as the filesystem counts them)."""
    text = os.fspath(path)
    encoded = os.fsencode(text)
    if len(encoded) > PATH_BYTES:
        raise LimitExceeded(f"{field}: the path {_preview(text)} is {len(encoded)} bytes; at most {PATH_BYTES} fit "
                            "(the filesystem's path limit)")
    for part in PurePath(text.replace("\\", "/")).parts:
        size = len(os.fsencode(part))
        if size > PATH_COMPONENT_BYTES:
            raise LimitExceeded(f"{field}: the name {_preview(part)} in path {_preview(text)} is {size} bytes; "
                                f"at most {PATH_COMPONENT_BYTES} fit in one path component (the filesystem's limit)")


def _preview(value: str, keep: int = 40) -> str:
    return repr(value if len(value) <= keep else value[:keep] + "…")
