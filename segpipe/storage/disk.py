"""Disk space: a free-space check before heavy writes, temp-name-then-rename writes, and one clear reason.

Heavy writes (checkpoints, exports, the Label Studio inbox) first call `ensure_free`: the disk must
hold what the write needs plus ``SEGPIPE_MIN_FREE_MB`` (so a job does not take the last megabytes a
database or a log needs). Writes go to a hidden temporary name beside the target and are renamed
when complete, so a full disk mid-write leaves no partial file under the real name; the temporary
file is removed. A full disk (ENOSPC, EDQUOT, or PyTorch's "file write failed" from its zip writer)
becomes `DiskFull`: "disk full at PATH, needed N MB (M MB free)".
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from segpipe.errors import SegpipeError

MB = 1024 * 1024
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class DiskFull(SegpipeError):
    """A write did not fit (or would not fit) on its disk; the message names the path and the sizes."""


def reserve_bytes() -> int:
    """``SEGPIPE_MIN_FREE_MB``: free space kept on every disk besides what a write needs."""
    from segpipe.settings import get_settings

    return int(get_settings().min_free_mb * MB)


def free_bytes(path: str | Path) -> int:
    """Free bytes (for an unprivileged writer) on the disk that holds ``path`` or its nearest existing parent."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _mb(n: float) -> str:
    return f"{n / MB:.1f}"


def ensure_free(path: str | Path, needed: int, *, reserve: int | None = None) -> None:
    """`DiskFull` unless the disk of ``path`` has ``needed`` bytes free beyond ``reserve``
    (default ``SEGPIPE_MIN_FREE_MB``)."""
    reserve = reserve_bytes() if reserve is None else reserve
    free = free_bytes(path)
    if free < needed + reserve:
        raise DiskFull(f"disk full at {path}: needed {_mb(needed)} MB plus {_mb(reserve)} MB kept free "
                       f"(SEGPIPE_MIN_FREE_MB), {_mb(free)} MB free")


def is_disk_full(exc: BaseException) -> bool:
    """An OSError for a full disk or quota, also behind another error: through ``torch.save`` a full disk
    is a RuntimeError ("[enforce fail at inline_container.cc] … file write failed", or "unexpected pos")
    raised while handling the OSError."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    text = str(exc)
    return isinstance(exc, RuntimeError) and "inline_container" in text and "file write failed" in text


def disk_full_error(path: str | Path, needed: int | None, exc: BaseException) -> DiskFull:
    free = free_bytes(path)
    need = f"needed {_mb(needed)} MB" if needed is not None else "the write did not fit"
    return DiskFull(f"disk full at {path}: {need}, {_mb(free)} MB free ({type(exc).__name__})")


@contextmanager
def atomic_target(path: str | Path, *, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on any failure it is
    removed. With ``needed`` (bytes), free space is checked first. A full disk becomes `DiskFull`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if needed is not None:
        ensure_free(path.parent, needed)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        if is_disk_full(exc):
            raise disk_full_error(path, needed, exc) from None
        raise


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None], *, needed: int | None = None) -> Path:
    """Write ``path`` through ``write(file)`` under a temporary name, fsync'd, then renamed."""
    with atomic_target(path, needed=needed) as tmp, tmp.open("wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    def write(fh: IO[bytes]) -> None:
        fh.write(data)

    return write_atomic(path, write, needed=len(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode())


@contextmanager
def disk_errors(path: str | Path, needed: int | None = None) -> Iterator[None]:
    """Turn a full-disk failure anywhere inside the block (a writer that writes many files) into `DiskFull`."""
    try:
        yield
    except DiskFull:
        raise
    except BaseException as exc:
        if is_disk_full(exc):
            raise disk_full_error(path, needed, exc) from None
        raise
