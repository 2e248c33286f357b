"""A worker's models in memory between jobs and shards: the last few loaded, least recently used out.

Keyed by the checkpoint file's path, size and modification time and the device asked for, so a
checkpoint rewritten in place (a training still running) is loaded afresh, never served stale.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path

from segpipe.engine.predict import LoadedModel, load_model, resolve_checkpoint

log = logging.getLogger("segpipe.model_cache")


class ModelCache:
    """At most ``capacity`` `LoadedModel`s (0 disables caching). ``hits``/``misses`` count lookups."""

    def __init__(self, capacity: int = 2) -> None:
        self.capacity = capacity
        self._models: OrderedDict[tuple[str, int, int, str], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, model_ref: str | Path, device: str = "auto") -> LoadedModel:
        path = resolve_checkpoint(model_ref)
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, device)
        with self._lock:
            loaded = self._models.get(key)
            if loaded is not None:
                self._models.move_to_end(key)
                self.hits += 1
                return loaded
        started = time.perf_counter()
        loaded = load_model(path, device)
        log.info("loaded %s in %.2f s", path, time.perf_counter() - started)
        with self._lock:
            self.misses += 1
            if self.capacity > 0:
                self._models[key] = loaded
                while len(self._models) > self.capacity:
                    self._models.popitem(last=False)
        return loaded

    def clear(self) -> None:
        with self._lock:
            self._models.clear()

    def __len__(self) -> int:
        return len(self._models)


_CACHE = ModelCache()


def cached_model(model_ref: str | Path, device: str = "auto", *, capacity: int | None = None) -> LoadedModel:
    """The process-wide cache's model for ``model_ref`` (``capacity`` resizes the cache when given)."""
    if capacity is not None:
        _CACHE.capacity = capacity
    return _CACHE.get(model_ref, device)


def process_cache() -> ModelCache:
    return _CACHE
