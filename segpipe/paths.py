"""Confinement of user-given paths to configured roots (a config that arrives over HTTP is untrusted).

A path is accepted only if, with every symlink resolved, it lies inside one of the allowed roots:
``..`` segments, absolute paths elsewhere and symlinks pointing out are all refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from segpipe.errors import ConfigError


class PathNotAllowed(ConfigError):
    """A path resolves outside every allowed root."""


def confine(path: str | Path, roots: Sequence[Path], *, what: str = "path", base: Path | None = None) -> Path:
    """The resolved `path` if it lies inside one of `roots`; relative paths are taken from `base`
    (default: the first root). Raises PathNotAllowed naming the path and the roots."""
    if not roots:
        raise PathNotAllowed(f"{what} {path}: no data roots are configured (set SEGPIPE_DATA_ROOTS)")
    raw = Path(path).expanduser()
    if not raw.is_absolute():
        raw = (base or roots[0]) / raw
    resolved = raw.resolve(strict=False)
    for root in roots:
        if resolved.is_relative_to(root.resolve(strict=False)):
            return resolved
    allowed = ", ".join(str(r) for r in roots)
    raise PathNotAllowed(f"{what} {path}: outside the allowed data roots ({allowed})")
