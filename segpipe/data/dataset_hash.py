"""A dataset's content hash: has anything in its images or annotations changed?

``dataset_hash(paths)`` digests every file under the given files and folders (recursively; hidden
files and folders such as ``.DS_Store`` or ``.cache/`` are skipped). Each file contributes its path
relative to the root it was found under and the SHA-256 of its bytes, in sorted order, so the hash is
stable across listing order, copies, ``touch`` and moving the whole dataset elsewhere, and changes when
a file's bytes change or a file is added, removed or renamed. Roots count by position: the same data
given as ``[images, annotations]`` and as ``[annotations, images]`` hashes differently.

Files are read in 1 MiB chunks (memory stays flat for any dataset size). A `HashCache` remembers each
file's digest by (path, size, mtime, inode), so a long-lived process (a beat tick every minute, a
worker) rereads only files that changed; a file rewritten within the filesystem's mtime resolution
with the same size would be missed, as with ``make`` and ``rsync``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from segpipe.errors import DataError

PREFIX = "sha256:"
_CHUNK = 1 << 20


class HashCache:
    """Per-file digests keyed by (path, size, mtime_ns, inode). Thread-safe; at most ``max_entries``
    (the oldest are dropped first)."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self.max_entries = max_entries
        self._digests: dict[tuple[str, int, int, int], str] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def digest(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        with self._lock:
            found = self._digests.get(key)
            if found is not None:
                self.hits += 1
                return found
        value = file_digest(path)
        with self._lock:
            self.misses += 1
            if len(self._digests) >= self.max_entries:
                del self._digests[next(iter(self._digests))]
            self._digests[key] = value
        return value


# One per process: beat ticks and retraining jobs of one worker share it.
DEFAULT_CACHE = HashCache()


def file_digest(path: Path) -> str:
    """SHA-256 (hex) of one file's bytes, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def dataset_hash(paths: Sequence[str | Path], *, cache: HashCache | None = DEFAULT_CACHE) -> str:
    """``"sha256:<64 hex>"`` over the files under ``paths`` (see the module docstring).

    `DataError` names a path that does not exist or a root that holds no files. ``cache=None`` reads
    every file.
    """
    if not paths:
        raise DataError("dataset hash: no files or folders to hash")
    total = hashlib.sha256()
    for index, root in enumerate(Path(p) for p in paths):
        if not root.exists():
            raise DataError(f"{root}: dataset path does not exist (it is hashed to detect changes)")
        count = 0
        for relative, path in _files(root):
            digest = cache.digest(path) if cache is not None else file_digest(path)
            # NUL and newline cannot be part of a digest; a name with a newline still cannot collide
            # with another entry because the root index and the digest frame every line.
            total.update(f"{index}\0{relative}\0{digest}\n".encode("utf-8", "surrogateescape"))
            count += 1
        if count == 0:
            raise DataError(f"{root}: dataset folder holds no files")
    return PREFIX + total.hexdigest()


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    """(posix path relative to root, path) of every non-hidden file, sorted by the relative path."""
    if root.is_file():
        yield root.name, root
        return
    found: list[tuple[str, Path]] = []
    seen: set[str] = set()
    # Linked folders are followed (datasets are often assembled from links); a link cycle is walked once.
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(folder)
        for name in files:
            if not name.startswith("."):
                path = base / name
                found.append((path.relative_to(root).as_posix(), path))
    yield from sorted(found)
