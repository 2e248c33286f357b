"""The worker's download cache, on fsspec's in-memory filesystem (a real fsspec backend, no server)."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from segpipe.errors import ConfigError
from segpipe.jobs.specs import PredictSpec
from segpipe.storage.cache import DownloadCache
from segpipe.storage.staging import stage_spec
from segpipe.storage.uri import Uri


@pytest.fixture
def store() -> fsspec.AbstractFileSystem:
    fs = fsspec.filesystem("memory")
    fs.rm("/cachetest", recursive=True) if fs.exists("/cachetest") else None
    fs.pipe("/cachetest/models/best.pt", b"x" * 100)
    fs.pipe("/cachetest/images/a.png", b"a" * 10)
    fs.pipe("/cachetest/images/sub/b.png", b"b" * 10)
    return fs


def test_a_file_is_downloaded_once_per_content(tmp_path: Path, store) -> None:
    cache = DownloadCache(tmp_path, max_bytes=10_000)
    uri = Uri("memory://cachetest/models/best.pt")
    first = cache.file(uri)
    assert first.read_bytes() == b"x" * 100 and cache.downloads == 1
    assert cache.file(uri) == first and cache.downloads == 1  # same content: served from disk
    store.pipe("/cachetest/models/best.pt", b"y" * 120)  # changed in the store: fetched again
    assert cache.file(uri).read_bytes() == b"y" * 120 and cache.downloads == 2


def test_folders_mirror_all_or_only_the_named_files(tmp_path: Path, store) -> None:
    cache = DownloadCache(tmp_path, max_bytes=10_000)
    some = cache.folder(Uri("memory://cachetest/images"), only=["sub/b.png"])
    assert sorted(p.relative_to(some).as_posix() for p in some.rglob("*.png")) == ["sub/b.png"]
    full = cache.folder(Uri("memory://cachetest/images"))
    assert sorted(p.relative_to(full).as_posix() for p in full.rglob("*.png")) == ["a.png", "sub/b.png"]
    assert cache.downloads == 2
    with pytest.raises(ConfigError, match="not found"):
        cache.folder(Uri("memory://cachetest/images"), only=["missing.png"])


def test_the_size_cap_evicts_the_least_recently_used(tmp_path: Path, store) -> None:
    cache = DownloadCache(tmp_path, max_bytes=150)
    model = cache.file(Uri("memory://cachetest/models/best.pt"))  # 100 bytes
    cache.folder(Uri("memory://cachetest/images"))  # 20 bytes: fits
    store.pipe("/cachetest/models/other.pt", b"z" * 100)
    cache.file(Uri("memory://cachetest/models/other.pt"))  # 100 more: the old model goes
    assert not model.exists() and cache.size() <= 150


def test_a_spec_is_staged_to_local_paths(tmp_path: Path, store) -> None:
    spec = PredictSpec.model_validate({"model": "m@1", "images": "memory://cachetest/images"})
    local = stage_spec(spec, DownloadCache(tmp_path, 10_000))
    assert isinstance(local.images, Path) and (local.images / "a.png").read_bytes() == b"a" * 10
    assert spec.images == "memory://cachetest/images"  # the original is untouched
