"""The image a Label Studio task points at, read into memory under a size limit.

A task's image value may be:
- ``/data/local-files/?d=REL`` (Label Studio serving local files): REL under ``SEGPIPE_LABEL_STUDIO_FILES_ROOT``
  (Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT``), and that path must lie inside segpipe's data roots;
- ``/data/upload/…`` or any other URL on the configured Label Studio server (``SEGPIPE_LABEL_STUDIO_URL``):
  fetched from it with ``SEGPIPE_LABEL_STUDIO_TOKEN`` (either kind, see `segpipe.labelstudio.tokens`); no
  other origin is ever contacted (no SSRF). The origin is scheme, host and port: an ``http://`` URL for an
  ``https://`` server is refused, so the token never travels in clear;
- a plain path: inside the data roots.
Every image is admitted (`segpipe.data.admission`) while still in memory; every error is an `ApiError`
4xx naming the task and the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from segpipe.api.errors import ApiError
from segpipe.data.admission import MB, ImageLimits, ImageRefused, admit_bytes
from segpipe.errors import ConfigError
from segpipe.labelstudio.tokens import LabelStudioAuth, shared_auth
from segpipe.limits import LimitExceeded
from segpipe.paths import confine
from segpipe.settings import Settings

FETCH_TIMEOUT = 20.0
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class TaskImage:
    task_id: object
    source: str  # what the task said
    content: bytes
    suffix: str  # ".png", ".jpg", … (from the name, else the content)
    local_path: Path | None  # set when the image is a file inside the data roots


def _suffix(name: str, content: bytes) -> str:
    suffix = Path(urlsplit(name).path).suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"):
        return suffix
    if content.startswith(b"\x89PNG"):
        return ".png"
    if content.startswith(b"\xff\xd8"):
        return ".jpg"
    return ".png"


def _read_local(path: Path, settings: Settings, task_id: object, source: str, limit: int) -> TaskImage:
    try:
        resolved = confine(path, settings.roots, what=f"task {task_id} image")
    except LimitExceeded as e:  # a name over the filesystem's limits: the request is at fault, not a refusal
        raise ApiError(422, str(e)) from None
    except ConfigError as e:
        raise ApiError(403, str(e)) from None
    if not resolved.is_file():
        raise ApiError(422, f"task {task_id}: image {source!r} not found ({resolved})")
    size = resolved.stat().st_size
    if size > limit:
        raise ApiError(413, f"task {task_id}: image {source!r} is {size} bytes, over the {limit}-byte limit")
    content = resolved.read_bytes()
    return TaskImage(task_id, source, content, _suffix(resolved.name, content), resolved)


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, lower-cased, the port made explicit for http/https."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: matches nothing
        return scheme, "", -1
    return scheme, (parts.hostname or "").lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


def on_label_studio(url: str, base: str | None) -> bool:
    """Whether ``url`` has the configured Label Studio server's origin: same scheme, host and port."""
    return base is not None and bool(origin(url)[1]) and origin(url) == origin(base)


def _fetch(url: str, settings: Settings, task_id: object, source: str, limit: int) -> TaskImage:
    auth = None
    if settings.label_studio_token and settings.label_studio_url:
        auth = shared_auth(settings.label_studio_url, settings.label_studio_token)
    try:
        return _fetch_once(url, auth, task_id, source, limit)
    except _Unauthorized:
        if auth is None or auth.access is None:
            raise ApiError(422, f"task {task_id}: Label Studio answered 401 for image {source!r}: set "
                                "SEGPIPE_LABEL_STUDIO_TOKEN to a token of that Label Studio") from None
        auth.invalidate()  # a revoked or early-expired access token: one more try with a fresh one
    try:
        return _fetch_once(url, auth, task_id, source, limit)
    except _Unauthorized:
        raise ApiError(422, f"task {task_id}: Label Studio answered 401 for image {source!r} with a fresh "
                            "access token of SEGPIPE_LABEL_STUDIO_TOKEN") from None


class _Unauthorized(Exception):
    pass


def _fetch_once(url: str, auth: LabelStudioAuth | None, task_id: object, source: str, limit: int) -> TaskImage:
    chunks, received = [], 0
    try:
        headers = auth.header() if auth is not None else {}
    except ConfigError as e:
        raise ApiError(422, f"task {task_id}: image {source!r}: {e}") from None
    try:
        with httpx.stream("GET", url, headers=headers, timeout=FETCH_TIMEOUT, follow_redirects=False) as response:
            if response.status_code == 401:
                raise _Unauthorized
            if response.status_code != 200:
                raise ApiError(422, f"task {task_id}: Label Studio answered {response.status_code} for image {source!r}")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise ApiError(413, f"task {task_id}: image {source!r} is {declared} bytes, over the {limit}-byte limit")
            for chunk in response.iter_bytes():
                received += len(chunk)
                if received > limit:
                    raise ApiError(413, f"task {task_id}: image {source!r} is over the {limit}-byte limit")
                chunks.append(chunk)
    except httpx.HTTPError as e:
        raise ApiError(422, f"task {task_id}: image {source!r} could not be fetched from Label Studio ({e})") from None
    content = b"".join(chunks)
    return TaskImage(task_id, source, content, _suffix(url, content), None)


def read_task_image(source: object, settings: Settings, task_id: object) -> TaskImage:
    """The task's image bytes, admitted (`segpipe.data.admission`: bytes and header pixels) before anything
    writes or decodes them; `ApiError` (403/413/422) naming the task when it cannot be had."""
    image = _task_image_bytes(source, settings, task_id)
    try:
        admit_bytes(image.content, f"task {task_id}: image {source!r}", ImageLimits.of(settings))
    except ImageRefused as e:
        raise ApiError(422 if e.code == "image-unreadable" else 413, str(e)) from None
    return image


def _task_image_bytes(source: object, settings: Settings, task_id: object) -> TaskImage:
    limit = int(min(settings.max_upload_mb, settings.max_image_mb) * MB)
    if not isinstance(source, str) or not source.strip():
        raise ApiError(422, f"task {task_id}: its image value must be a non-empty string, got {source!r}")
    parts = urlsplit(source)
    if parts.path.endswith("/data/local-files/") or parts.path == "/data/local-files":
        relative = parse_qs(parts.query).get("d", [""])[0]
        if not relative:
            raise ApiError(422, f"task {task_id}: local-files URL {source!r} has no ?d= path")
        if settings.label_studio_files_root is None:
            raise ApiError(422, f"task {task_id}: {source!r} is a Label Studio local file, but "
                                "SEGPIPE_LABEL_STUDIO_FILES_ROOT (its LOCAL_FILES_DOCUMENT_ROOT) is not set")
        return _read_local(settings.label_studio_files_root / relative, settings, task_id, source, limit)
    if parts.scheme in ("http", "https") or source.startswith("/"):
        base = settings.label_studio_url
        if parts.scheme in ("http", "https"):
            if not on_label_studio(source, base):
                raise ApiError(403, f"task {task_id}: image {source!r} is not on the configured Label Studio "
                                    f"server ({base or 'SEGPIPE_LABEL_STUDIO_URL is not set'}; scheme, host and port "
                                    "must all match); segpipe fetches no other host")
            return _fetch(source, settings, task_id, source, limit)
        if source.startswith("/data/"):
            if base is None:
                raise ApiError(422, f"task {task_id}: image {source!r} lives on Label Studio, but "
                                    "SEGPIPE_LABEL_STUDIO_URL is not set")
            return _fetch(urljoin(base.rstrip("/") + "/", source.lstrip("/")), settings, task_id, source, limit)
    if parts.scheme:
        raise ApiError(422, f"task {task_id}: image {source!r}: scheme {parts.scheme!r} is not supported")
    return _read_local(Path(source), settings, task_id, source, limit)
