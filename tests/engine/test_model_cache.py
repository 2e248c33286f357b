"""The worker's in-memory model cache: hits, a rewritten checkpoint loaded afresh, least recently used out."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from segpipe.engine.model_cache import ModelCache
from segpipe.engine.predict import resolve_checkpoint
from tests.engine.runs import Run


def test_hits_reloads_and_evictions(classification_run: Run, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(classification_run.dir, first)
    shutil.copytree(classification_run.dir, second)
    cache = ModelCache(capacity=1)
    model = cache.get(first, "cpu")
    assert cache.get(first, "cpu") is model and (cache.hits, cache.misses) == (1, 1)

    checkpoint = resolve_checkpoint(first)
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # rewritten by a running training
    reloaded = cache.get(first, "cpu")
    assert reloaded is not model and cache.misses == 2

    cache.get(second, "cpu")  # capacity 1: the first model goes
    assert len(cache) == 1 and cache.get(first, "cpu") is not reloaded and cache.misses == 4

    off = ModelCache(capacity=0)
    assert off.get(first, "cpu") is not off.get(first, "cpu") and len(off) == 0
