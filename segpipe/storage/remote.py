"""The fsspec filesystem behind a URI (s3fs for ``s3://``), one per scheme and process.

Credentials and the endpoint come from the standard environment of each backend (for S3:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` for MinIO or another
S3-compatible server), never from a job config.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from segpipe.errors import ConfigError
from segpipe.storage.uri import Uri


@lru_cache(maxsize=8)
def _filesystem(scheme: str) -> Any:
    import fsspec

    try:
        return fsspec.filesystem(scheme)
    except (ImportError, ValueError) as e:
        hint = " (pip install s3fs)" if scheme == "s3" else ""
        raise ConfigError(f"no filesystem for {scheme}:// URIs{hint}: {e}") from None


def filesystem(uri: Uri) -> Any:
    """The fsspec filesystem for ``uri``'s scheme; pass it ``uri.key`` paths."""
    return _filesystem(uri.scheme)


def tag(info: dict[str, Any]) -> str:
    """A content tag from an fsspec ``info`` entry: the ETag where the store gives one, else size+mtime."""
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return str(etag).strip('"')
    return f"{info.get('size')}-{info.get('LastModified') or info.get('mtime') or info.get('created')}"


def files_under(uri: Uri) -> dict[str, dict[str, Any]]:
    """Relative key → info of every object under ``uri`` (a "folder"); {} if there are none."""
    fs = filesystem(uri)
    root = fs._strip_protocol(str(uri)).rstrip("/")  # noqa: SLF001 - the backend's own spelling (memory:// adds a "/")
    prefix = root + "/"
    found = fs.find(root, detail=True)
    return {name[len(prefix) :]: info for name, info in found.items()
            if name.startswith(prefix) and info.get("type", "file") == "file"}


def upload(local: Any, uri: Uri) -> None:
    filesystem(uri).put_file(str(local), uri.key)


def upload_tree(local: Path, uri: Uri, *, last: str | None = None) -> None:
    """``local`` to ``uri``: a file as it is, a folder file by file under the same relative names. ``last``
    (a relative name) goes up after every other file, so a reader that waits for it sees a whole folder."""
    if local.is_file():
        upload(local, uri)
        return
    files = {path.relative_to(local).as_posix(): path for path in sorted(local.rglob("*")) if path.is_file()}
    for name in sorted(files, key=lambda name: name == last):  # stable: `last` moves to the end
        upload(files[name], uri / name)


def exists(uri: Uri) -> bool:
    return bool(filesystem(uri).exists(uri.key))
