"""A worker's download cache: objects fetched from URIs, kept on its own disk, keyed by content tag.

``root/<sha of the URI>/…`` holds one file, or one folder's files, with a ``.tags.json`` manifest of
the ETag each local copy was downloaded at: a later fetch downloads again only what changed in the
store. Model checkpoints of a version never change, so a worker downloads each version once.
The cache is capped (``SEGPIPE_CACHE_MAX_GB``): before each download the least recently used files
go until the new one fits. Downloads land in a temporary name and are renamed, so a worker killed
mid-download leaves no half file behind under the real name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from segpipe.errors import ConfigError
from segpipe.storage import remote
from segpipe.storage.disk import disk_errors, ensure_free
from segpipe.storage.uri import Uri

log = logging.getLogger("segpipe.cache")
MANIFEST = ".tags.json"


class DownloadCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.downloads = 0

    def slot(self, uri: Uri) -> Path:
        return self.root / hashlib.sha256(uri.encode()).hexdigest()[:32]

    def file(self, uri: Uri) -> Path:
        """The local copy of the object at ``uri`` (downloaded unless the cached copy has its tag)."""
        fs = remote.filesystem(uri)
        try:
            info = fs.info(uri.key)
        except FileNotFoundError:
            raise ConfigError(f"{uri}: no such object") from None
        slot = self.slot(uri)
        return self._fetch(uri, info, slot, slot / uri.name, uri.name)

    def folder(self, uri: Uri, only: Iterable[str] | None = None) -> Path:
        """A local folder mirroring the objects under ``uri`` (all of them, or the relative names in ``only``)."""
        listed = remote.files_under(uri)
        if not listed:
            raise ConfigError(f"{uri}: no objects under this prefix")
        wanted = listed if only is None else {rel: listed[rel] for rel in only if rel in listed}
        missing = [] if only is None else [rel for rel in only if rel not in listed]
        if missing:
            raise ConfigError(f"{uri}: {len(missing)} object(s) not found, e.g. {missing[0]}")
        slot = self.slot(uri)
        for rel, info in wanted.items():
            self._fetch(uri / rel, info, slot, slot / rel, rel)
        return slot

    def _fetch(self, uri: Uri, info: dict[str, Any], slot: Path, target: Path, rel: str) -> Path:
        tag = remote.tag(info)
        with self._lock:
            tags = _read_tags(slot)
            if target.is_file() and tags.get(rel) == tag:
                os.utime(target)  # recently used: evicted last
                return target
            size = int(info.get("size") or 0)
            self._make_room(size)
            target.parent.mkdir(parents=True, exist_ok=True)
            ensure_free(target.parent, size)  # "disk full at PATH, needed N MB" before the download
            partial = target.with_name(target.name + f".part-{os.getpid()}")
            try:
                with disk_errors(target, size):
                    remote.filesystem(uri).get_file(uri.key, str(partial))
            except BaseException:
                partial.unlink(missing_ok=True)  # no half-downloaded object stays in the cache
                raise
            partial.replace(target)
            self.downloads += 1
            tags = _read_tags(slot)
            tags[rel] = tag
            _write_tags(slot, tags)
        return target

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file() and p.name != MANIFEST)

    def _make_room(self, incoming: int) -> None:
        if not self.root.is_dir():
            return
        files = [p for p in self.root.rglob("*") if p.is_file() and p.name != MANIFEST]
        total = sum(p.stat().st_size for p in files)
        for path in sorted(files, key=lambda p: p.stat().st_mtime):
            if total + incoming <= self.max_bytes:
                break
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
            log.info("cache full: evicted %s", path)


def _read_tags(slot: Path) -> dict[str, str]:
    try:
        return json.loads((slot / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def _write_tags(slot: Path, tags: dict[str, str]) -> None:
    slot.mkdir(parents=True, exist_ok=True)
    partial = slot / (MANIFEST + f".part-{os.getpid()}")
    partial.write_text(json.dumps(tags))
    partial.replace(slot / MANIFEST)


_CACHES: dict[tuple[str, int], DownloadCache] = {}


def worker_cache(settings: Any) -> DownloadCache:
    """This process's cache under ``SEGPIPE_HOME/cache/downloads``, capped at ``cache_max_gb``."""
    root = settings.home_dir / "cache" / "downloads"
    key = (str(root), int(settings.cache_max_gb * 2**30))
    if key not in _CACHES:
        _CACHES[key] = DownloadCache(root, key[1])
    return _CACHES[key]
