"""A job's files: its artifacts (list, download), a predict job's COCO results, streamed, and its exports
(``GET /jobs/{id}/export?format=…``: any format of the export registry, one file as it is or a zip).

Every artifact path, whether a registered name or a path typed into the URL, goes through
`ArtifactStore.resolve`, which refuses anything leaving the job's folder (``..``, absolute paths,
symlinks pointing out): 403 naming the path.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask

from segpipe.api.auth import Principal, annotator
from segpipe.api.deps import ApiContext, context
from segpipe.api.errors import ApiError
from segpipe.api.schemas import ArtifactList, ArtifactOut, ErrorOut, FolderListing
from segpipe.errors import SegpipeError
from segpipe.job_kinds import PREDICTIONS, has
from segpipe.masks.formats import PREDICTION_FORMATS
from segpipe.masks.rows import DEFAULT_SCORE_THRESHOLD
from segpipe.masks.stored import stream_results_json
from segpipe.stores import Stores
from segpipe.vocabulary import Segmentation

router = APIRouter(prefix="/jobs", tags=["job files"])
MAX_LISTED_FILES = 10_000
STREAM_CHUNK_BYTES = 64 * 1024
_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}}
# What a download is served as (and all the OpenAPI document declares): anything else is octet-stream.
_MEDIA = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".json": "application/json",
          ".csv": "text/csv", ".yaml": "application/yaml", ".jsonl": "application/x-ndjson", ".txt": "text/plain"}


def _describe(stores: Stores, job_id: str, name: str, relative: str) -> ArtifactOut:
    try:
        path = stores.artifacts.resolve(job_id, relative)
    except SegpipeError:
        # A recorded path that escapes the folder is treated as absent, never followed.
        return ArtifactOut(name=name, path=relative, kind="missing")
    if path.is_file():
        return ArtifactOut(name=name, path=relative, kind="file", bytes=path.stat().st_size)
    if not path.is_dir() and stores.artifacts.remote is not None:
        return _describe_remote(stores, job_id, name, relative)
    return ArtifactOut(name=name, path=relative, kind="folder" if path.is_dir() else "missing")


def _describe_remote(stores: Stores, job_id: str, name: str, relative: str) -> ArtifactOut:
    """An artifact in an object-store root (this API host wrote none of the job's files)."""
    from segpipe.storage import remote

    uri = stores.artifacts.uri(job_id, relative)
    fs = remote.filesystem(uri)
    if not fs.exists(uri.key):
        return ArtifactOut(name=name, path=relative, kind="missing")
    if fs.isdir(uri.key):
        return ArtifactOut(name=name, path=relative, kind="folder")
    return ArtifactOut(name=name, path=relative, kind="file", bytes=int(fs.info(uri.key).get("size") or 0))


@router.get("/{job_id}/artifacts", response_model=ArtifactList, responses=_ERRORS)
def list_artifacts(
    job_id: str, ctx: ApiContext = Depends(context), _who: Principal = Depends(annotator)
) -> ArtifactList:
    """The job's recorded artifacts: name, path in the job folder, file or folder, size."""
    recorded = ctx.stores.artifacts.list(job_id)
    items = [_describe(ctx.stores, job_id, name, rel) for name, rel in sorted(recorded.items())]
    return ArtifactList(job_id=job_id, artifacts=items)


def _folder_listing(job_id: str, base: Path, folder: Path) -> FolderListing:
    files: list[str] = []
    truncated = False
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            if len(files) == MAX_LISTED_FILES:
                truncated = True
                break
            files.append(path.relative_to(base).as_posix())
    return FolderListing(job_id=job_id, folder=folder.relative_to(base).as_posix(), files=files, truncated=truncated)


@router.get(
    "/{job_id}/artifacts/{name:path}",
    response_model=None,
    responses={
        200: {
            "description": "the file (as an attachment), or for a folder the JSON listing of its files",
            "content": {
                **{media: {"schema": {"type": "string", "format": "binary"}} for media in sorted(set(_MEDIA.values()))},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": FolderListing.model_json_schema()},
            },
        },
        **_ERRORS,
    },
)
def download_artifact(
    job_id: str, name: str, ctx: ApiContext = Depends(context), _who: Principal = Depends(annotator)
) -> FileResponse | FolderListing:
    """Download an artifact by its recorded name (``best.pt``, ``plots/loss.png``) or by a path inside the
    job folder (``predictions/masks/7.png``). A folder answers with the list of its files."""
    recorded = ctx.stores.artifacts.list(job_id)  # also 404s an unknown job
    relative = recorded.get(name, name)
    path = ctx.stores.artifacts.resolve(job_id, relative)
    if path.is_file():
        # An attachment, never sniffed: an artifact must not run as a page in the browser.
        return FileResponse(
            path,
            media_type=_MEDIA.get(path.suffix.lower(), "application/octet-stream"),
            filename=path.name,
            content_disposition_type="attachment",
            headers={"X-Content-Type-Options": "nosniff"},
        )
    if path.is_dir():
        base = ctx.stores.artifacts.job_dir(job_id).resolve()
        return _folder_listing(job_id, base, path)
    if ctx.stores.artifacts.remote is not None:
        found = _remote_artifact(ctx.stores, job_id, relative)
        if found is not None:
            return found
    known = ", ".join(sorted(recorded)) or "none recorded"
    raise ApiError(404, f"job {job_id} has no artifact {name!r} (artifacts: {known})")


def _remote_artifact(stores: Stores, job_id: str, relative: str) -> FileResponse | FolderListing | None:
    """A file of an object-store root through this host's download cache, or a folder's listing."""
    from segpipe.storage import remote

    uri = stores.artifacts.uri(job_id, relative)
    fs = remote.filesystem(uri)
    if not fs.exists(uri.key):
        return None
    if fs.isdir(uri.key):
        names = sorted(remote.files_under(uri))
        folder = relative.strip("/")
        return FolderListing(job_id=job_id, folder=folder, files=[f"{folder}/{n}" for n in names[:MAX_LISTED_FILES]],
                             truncated=len(names) > MAX_LISTED_FILES)
    assert stores.artifacts.cache is not None  # a remote root always comes with a cache (`Stores.open`)
    path = stores.artifacts.cache.file(uri)
    return FileResponse(path, filename=path.name, content_disposition_type="attachment",
                        headers={"X-Content-Type-Options": "nosniff"})


# -- results -----------------------------------------------------------------------------------------


def chunked(pieces: Iterator[bytes], size: int = STREAM_CHUNK_BYTES) -> Iterator[bytes]:
    """Join small byte pieces into chunks of at least ``size`` bytes (the last may be shorter):
    each chunk costs one thread-pool hop and one socket write, so rows are not sent one by one."""
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        if len(buffer) >= size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def _results(stores: Stores, job_id: str) -> Iterator[bytes]:
    rows = stores.predictions.iter_job(job_id)
    # closing(): a client that disconnects mid-stream must not leave the read transaction open.
    with closing(rows):
        yield from chunked(stream_results_json(rows))


async def _in_threads(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Drive a blocking iterator from the thread pool, closing it (and its transaction) however the stream ends."""
    try:
        while (chunk := await run_in_threadpool(next, chunks, None)) is not None:
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


@router.get(
    "/{job_id}/results",
    responses={
        200: {
            "description": "COCO results JSON array (loads with pycocotools COCO.loadRes)",
            "content": {"application/json": {}},
        },
        409: {"model": ErrorOut, "description": "the job is not a predict job"},
        **_ERRORS,
    },
)
def job_results(
    job_id: str, ctx: ApiContext = Depends(context), _who: Principal = Depends(annotator)
) -> StreamingResponse:
    """The predict job's COCO results (RLE masks, original category ids), streamed row by row from
    the store. While the job runs this is what it has stored so far (header ``X-Segpipe-Job-State``)."""
    job = ctx.stores.jobs.get(job_id)
    if not has(job.kind, PREDICTIONS):
        raise ApiError(409, f"job {job_id} is a {job.kind} job; only predict jobs have results")
    return StreamingResponse(
        _in_threads(_results(ctx.stores, job_id)),
        media_type="application/json",
        headers={"X-Segpipe-Job-State": job.state, "Content-Disposition": f'attachment; filename="{job_id}.json"'},
    )


# -- exports -----------------------------------------------------------------------------------------


@router.get(
    "/{job_id}/export",
    response_model=None,
    responses={
        200: {
            "description": "one format that writes one file (coco-results: predictions.json, cvat-mask: "
            "cvat-mask.zip, csv) comes as that file; anything else as a zip of the export folder",
            "content": {"application/zip": {}, "application/json": {}, "text/csv": {}},
        },
        409: {"model": ErrorOut, "description": "the job is not a predict job"},
        422: {"model": ErrorOut, "description": "unknown format (the known ones are listed), one that "
              "does not fit the job's task, or a category id the job's model does not have (its categories "
              "are listed)"},
        **_ERRORS,
    },
)
def job_export(
    job_id: str,
    format: str = Query(..., max_length=200, description="prediction format(s), comma-separated: "
                        + ", ".join(PREDICTION_FORMATS.names())),
    score_threshold: float = Query(DEFAULT_SCORE_THRESHOLD, ge=0, le=1),
    image_url_prefix: str = Query("/data/local-files/?d=", max_length=2000,
                                  description="label-studio: data.image = this prefix + the image's file name"),
    segmentation: Segmentation = Query("rle", description="masks in coco / label-studio"),
    categories: str | None = Query(
        None, max_length=2000, pattern=r"^([0-9]{1,10}(,[0-9]{1,10})*)?$",
        description="only these categories, by original category id, comma-separated (e.g. 3,7); absent: "
        "every category; empty: none (the images without rows). Every format honours it."),
    duplicates: Literal["auto", "suppress", "keep"] = Query(
        "auto", description="overlapping instances across classes: suppress, keep, or auto (suppressed in "
        "label-studio and cvat-mask, the pre-label formats; kept elsewhere)"),
    ctx: ApiContext = Depends(context),
    _who: Principal = Depends(annotator),
) -> FileResponse:
    """A predict job's stored predictions in any prediction format, ready for CVAT / Label Studio as they are.
    While the job runs this is what it has stored so far (header ``X-Segpipe-Job-State``)."""
    from segpipe.jobs.exports import export_job, job_source
    from segpipe.masks.formats import parse_category_ids

    job = ctx.stores.jobs.get(job_id)
    if not has(job.kind, PREDICTIONS):
        raise ApiError(409, f"job {job_id} is a {job.kind} job; only predict jobs have exports")
    only_categories = parse_category_ids(categories)
    names = [n.strip() for n in format.split(",") if n.strip()]
    scratch = Path(tempfile.mkdtemp(prefix=f"segpipe-export-{job_id}-"))
    cleanup = BackgroundTask(shutil.rmtree, scratch, ignore_errors=True)
    try:
        # the model's task and classes from its run's small files: the API never loads a checkpoint (torch)
        source = job_source(ctx.stores, job_id, checkpoint_fallback=False)
        files = export_job(ctx.stores, job_id, scratch / "out", names, source=source, score_threshold=score_threshold,
                           image_url_prefix=image_url_prefix, segmentation=segmentation,
                           only_categories=only_categories,
                           suppress_duplicates={"auto": None, "suppress": True, "keep": False}[duplicates])
        headers = {"X-Segpipe-Job-State": job.state, "X-Content-Type-Options": "nosniff"}
        single = PREDICTION_FORMATS.get(names[0]).single_file if len(files) == 1 else None
        if single is not None:
            path = scratch / "out" / single
            return FileResponse(path, filename=f"{job_id}-{single}", headers=headers, background=cleanup,
                                content_disposition_type="attachment")
        archive = scratch / f"{job_id}-{'-'.join(files)}.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
            for path in sorted((scratch / "out").rglob("*")):
                if path.is_file() or path.is_dir():
                    zipped.write(path, path.relative_to(scratch / "out").as_posix())
        return FileResponse(archive, filename=archive.name, media_type="application/zip", headers=headers,
                            background=cleanup, content_disposition_type="attachment")
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
