"""Confinement of user-given paths to configured roots: the one door every user-referenced file goes through.

A config that arrives over HTTP is untrusted, and so is every name *inside* the data it points at (a COCO
``file_name``, an image in a listed folder, a symlink in a data root). The rules:

- `confine(path, roots)` — THE check. ``path`` is resolved with every symlink followed (folders *and* the
  file itself) and must lie inside one of ``roots``. ``..``, absolute paths elsewhere and symlinks that
  lead out are refused with `PathNotAllowed` naming the path and the roots; a path over the filesystem's
  length limits with `segpipe.limits.LimitExceeded` naming the field.
- `confine_name(name, folder, roots)` — a *relative name* that data gives (COCO ``file_name``, an output
  file named after an image): absolute names and ``..`` parts are refused outright (as dataset validation
  does), then ``folder / name`` goes through `confine`. Outputs use ``roots=[the job's folder]``, so a
  result file never lands outside it.
- `confined_to(roots)` — while a queued job runs (``segpipe.jobs.execute.run_job``) the worker's data roots
  plus its artifact root are *active*: `check_read` (called by `segpipe.data.images.read_image`,
  ``read_mask``, ``load_coco``, the predict image lister and dataset validation) confines every file it
  is asked to read. Outside such a block (a local ``segpipe train`` by a person on their own files) reads
  are not confined, but names that data gives are still refused if absolute or climbing with ``..``.

Roots may also be object-store URIs (``s3://bucket/prefix``): a URI path is confined by the same prefix
rule on the normalised URI (`segpipe.storage.uri.confine_uri`: ``..`` refused, another bucket or a
sibling prefix refused), and only against URI roots; a local path only against local roots.

A symlink swapped in between the check and the read is out of scope: data roots are written by people
who already may read them, never by API callers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path, PurePosixPath, PureWindowsPath

from segpipe.errors import PathNotAllowed
from segpipe.limits import check_path

Roots = Sequence[Path]

_ACTIVE: ContextVar[tuple[Path, ...] | None] = ContextVar("segpipe_confined_roots", default=None)


def confine(path: str | Path, roots: Roots, *, what: str = "path", base: Path | None = None) -> Path:
    """The resolved `path` if it lies inside one of `roots`; relative paths are taken from `base`
    (default: the first root). Symlinks are resolved first, for files as well as folders.
    A URI (``s3://…``) comes back as a normalised `Uri` if it lies inside a URI root.
    Raises PathNotAllowed naming the path and the roots."""
    from segpipe.storage.uri import confine_uri, is_uri

    if is_uri(path):
        if not roots:
            raise PathNotAllowed(f"{what} {path}: no data roots are configured (set SEGPIPE_DATA_ROOTS)")
        return confine_uri(str(path), roots, what=what)  # type: ignore[return-value]  # a Uri stands for a Path
    local_roots = [r for r in roots if not is_uri(r)]
    if roots and not local_roots:
        allowed = ", ".join(str(r) for r in roots)
        raise PathNotAllowed(f"{what} {path}: only object-store roots are configured ({allowed}); give a URI inside one")
    roots = local_roots
    text = os.fspath(path)
    if "\x00" in text:
        raise PathNotAllowed(f"{what} {text!r}: contains a NUL character")
    check_path(what, text)  # over the filesystem's name or path length: the OS would fail later, unnamed
    if not roots:
        raise PathNotAllowed(f"{what} {text}: no data roots are configured (set SEGPIPE_DATA_ROOTS)")
    raw = Path(text).expanduser()
    if not raw.is_absolute():
        raw = (base or roots[0]) / raw
    try:
        resolved = raw.resolve(strict=False)
    except (OSError, RuntimeError) as e:  # a symlink loop, a name too long
        raise PathNotAllowed(f"{what} {text}: cannot be resolved ({e})") from None
    for root in roots:
        if resolved.is_relative_to(Path(root).resolve(strict=False)):
            return resolved
    allowed = ", ".join(str(r) for r in roots)
    hint = " (through a symlink)" if raw.is_absolute() and _lexically_inside(raw, roots) else ""
    raise PathNotAllowed(f"{what} {text}: outside the allowed data roots{hint} ({allowed})")


def safe_name(name: str, *, what: str = "file name") -> PurePosixPath:
    """A relative name given by data, as a POSIX path; refuses empty, absolute, drive-letter, NUL and ``..`` names."""
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise PathNotAllowed(f"{what} {name!r}: empty, not a string or contains a NUL character")
    check_path(what, name)
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(name).drive or PureWindowsPath(name).root:
        raise PathNotAllowed(f"{what} {name!r}: absolute paths are not allowed; names are relative to their folder")
    if ".." in posix.parts:
        raise PathNotAllowed(f"{what} {name!r}: '..' is not allowed; names must stay inside their folder")
    return posix


def confine_name(name: str, folder: Path, roots: Roots | None = None, *, what: str = "file name") -> Path:
    """``folder / name`` for a relative `name` that data gives, checked by `safe_name` and then, with
    every symlink resolved, by `confine` against `roots` (default: the active roots; none active and
    none given: only the lexical check)."""
    joined = Path(folder).absolute() / safe_name(name, what=what)  # a folder is a real path: cwd-relative
    roots = roots if roots is not None else _ACTIVE.get()
    return confine(joined, roots, what=what) if roots is not None else joined


def output_path(folder: Path, name: str, *, what: str = "output file") -> Path:
    """Where to write output `name` inside `folder` (a job's folder): never outside it, even through symlinks."""
    folder = Path(folder).absolute()
    return confine_name(name, folder, [folder], what=what)


@contextmanager
def confined_to(roots: Roots) -> Iterator[tuple[Path, ...]]:
    """Make `roots` the active roots for `check_read` in this context (a queued job's run)."""
    from segpipe.storage.uri import is_uri

    # URI roots are checked when a spec is confined; what a job reads from them is staged into its
    # worker's cache, which the caller names among the local roots
    resolved = tuple(Path(r).expanduser().resolve() for r in roots if not is_uri(r))
    token = _ACTIVE.set(resolved)
    try:
        yield resolved
    finally:
        _ACTIVE.reset(token)


def active_roots() -> tuple[Path, ...] | None:
    """The roots reads are confined to now; None outside `confined_to` (a local run)."""
    return _ACTIVE.get()


def check_read(path: str | Path, *, what: str = "file", roots: Roots | None = None) -> Path:
    """`path` confined to `roots` (default: the active roots) before it is read; unchanged when none apply."""
    roots = roots if roots is not None else _ACTIVE.get()
    check_path(what, os.fspath(path))
    # a relative path is read from the working directory, so that is where it is checked
    return confine(Path(path).absolute(), roots, what=what) if roots is not None else Path(path)


def _lexically_inside(path: Path, roots: Roots) -> bool:
    normal = Path(os.path.normpath(path))
    return any(normal.is_relative_to(Path(os.path.normpath(Path(r).expanduser()))) for r in roots)
