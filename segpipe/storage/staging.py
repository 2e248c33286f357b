"""A job's spec with each URI replaced by its local copy from the worker's cache.

Run by the worker before the library sees the spec: the data layer, the engine and the exporters
read local files only. A URI names an object (a COCO file, a checkpoint) or a prefix (a folder of
images); a prefix is mirrored whole, or only the files a shard needs (`stage_items`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from segpipe.storage import remote
from segpipe.storage.cache import DownloadCache
from segpipe.storage.uri import Uri, is_uri

M = TypeVar("M", bound=BaseModel)


def stage_uri(uri: Uri, cache: DownloadCache) -> Path:
    """A local copy of ``uri``: the object, or the folder of objects under the prefix."""
    fs = remote.filesystem(uri)
    return cache.folder(uri) if fs.isdir(uri.key) else cache.file(uri)


def stage_spec(spec: M, cache: DownloadCache) -> M:
    """A copy of ``spec`` (nested models too) whose `Uri` values are local paths."""
    updates: dict[str, Any] = {}
    for name in type(spec).model_fields:
        value = getattr(spec, name)
        if is_uri(value):
            updates[name] = stage_uri(Uri(value), cache)
        elif isinstance(value, BaseModel):
            staged = stage_spec(value, cache)
            if staged is not value:
                updates[name] = staged
        elif isinstance(value, list) and any(is_uri(v) or isinstance(v, BaseModel) for v in value):
            updates[name] = [stage_uri(Uri(v), cache) if is_uri(v) else
                             stage_spec(v, cache) if isinstance(v, BaseModel) else v for v in value]
    return spec.model_copy(update=updates) if updates else spec


def has_uris(spec: BaseModel) -> bool:
    for name in type(spec).model_fields:
        value = getattr(spec, name)
        if is_uri(value) or (isinstance(value, BaseModel) and has_uris(value)):
            return True
        if isinstance(value, list) and any(is_uri(v) or (isinstance(v, BaseModel) and has_uris(v)) for v in value):
            return True
    return False
