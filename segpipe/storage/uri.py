"""Object-store URIs as config values, and their confinement to URI roots.

A config field that takes a path (`Location`) keeps a local path as a `Path` and a URI
(``scheme://…``) as a `Uri` — a `str` normalised to ``scheme://bucket/key`` with no empty,
``.`` or ``..`` segments. Confinement is the prefix rule on segments: ``s3://b/data/x`` lies in
root ``s3://b/data`` but not in ``s3://b/dat`` nor ``s3://other/data``; ``..`` is refused outright
(object stores have no symlinks, so the normalised text is the whole truth).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator

from segpipe.errors import ConfigError, PathNotAllowed

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.DOTALL)
LOCAL_SCHEMES = frozenset({"file", "local"})


class Uri(str):
    """A normalised object-store URI (``s3://bucket/key``); ``/`` joins like a `Path`."""

    @property
    def scheme(self) -> str:
        return self.split("://", 1)[0]

    @property
    def key(self) -> str:
        """``bucket/key`` — the fsspec path."""
        return self.split("://", 1)[1]

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> Uri:
        scheme, rest = self.scheme, self.key
        return Uri(f"{scheme}://{rest.rsplit('/', 1)[0]}") if "/" in rest else self

    def __truediv__(self, other: str | Path) -> Uri:
        return parse_uri(f"{self.rstrip('/')}/{Path(other).as_posix() if isinstance(other, Path) else other}")

    def is_relative_to(self, root: Uri) -> bool:
        return self == root or self.startswith(root.rstrip("/") + "/")

    def relative_to(self, root: Uri) -> str:
        if not self.is_relative_to(root):
            raise ValueError(f"{self} is not inside {root}")
        return self[len(root.rstrip("/")) :].lstrip("/")


def is_uri(value: object) -> bool:
    """True for ``scheme://…`` text (other than ``file://``) or a `Uri`."""
    if isinstance(value, Uri):
        return True
    if not isinstance(value, str):
        return False
    m = _SCHEME.match(value)
    return m is not None and m["scheme"].lower() not in LOCAL_SCHEMES


def parse_uri(text: str, *, what: str = "URI") -> Uri:
    """`text` as a normalised `Uri`; `ConfigError` for ``..``, a NUL, or no bucket."""
    m = _SCHEME.match(text)
    if m is None:
        raise ConfigError(f"{what} {text!r}: not a URI (expected scheme://bucket/key)")
    if "\x00" in text:
        raise ConfigError(f"{what} {text!r}: contains a NUL character")
    parts = [p for p in m["rest"].split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ConfigError(f"{what} {text}: '..' is not allowed in a URI")
    if not parts:
        raise ConfigError(f"{what} {text!r}: names no bucket")
    return Uri(f"{m['scheme'].lower()}://{'/'.join(parts)}")


def to_location(value: Any) -> Path | Uri:
    """A config value as a local `Path` or a `Uri` (``file://`` URIs become paths)."""
    if isinstance(value, (Path, Uri)):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a path or a URI, got {type(value).__name__}")  # noqa: TRY004 - pydantic reports ValueError
    if is_uri(value):
        return parse_uri(value)
    if value.lower().startswith("file://"):
        return Path(value[len("file://") :])
    return Path(value)


# A path or URI field of a config: validated by `to_location`, written back as text.
Location = Annotated[Path | Uri, PlainValidator(to_location), PlainSerializer(str, return_type=str)]


def confine_uri(uri: str, roots: Sequence[Any], *, what: str = "path") -> Uri:
    """`uri` normalised, if it lies inside one of the URI `roots`; else `PathNotAllowed` naming them."""
    try:
        normal = parse_uri(str(uri), what=what)
    except ConfigError as e:
        raise PathNotAllowed(str(e)) from None
    uri_roots = [parse_uri(str(r)) for r in roots if is_uri(r)]
    for root in uri_roots:
        if normal.is_relative_to(root):
            return normal
    allowed = ", ".join(str(r) for r in roots) or "(none)"
    raise PathNotAllowed(f"{what} {uri}: outside the allowed data roots ({allowed})")
