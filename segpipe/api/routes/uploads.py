"""``POST /uploads`` (engineer+): image files for a predict job, stored under ``<first data root>/uploads/<id>/``.

The answer's ``images`` (``uploads/<id>``, relative to the first data root) goes straight into a
predict job's ``images``. Limits and checks are in `segpipe.api.upload_stream`.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import asdict

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from segpipe.api.auth import Principal, engineer
from segpipe.api.deps import ApiContext, context
from segpipe.api.schemas import ErrorOut, UploadedFile, UploadOut
from segpipe.api.upload_stream import MultipartImageWriter, multipart_boundary
from segpipe.data.admission import ImageLimits

router = APIRouter(tags=["uploads"])
UPLOADS_DIR = "uploads"

_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "files": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}}
                },
                "required": ["files"],
                "additionalProperties": False,
            }
        }
    },
}


@router.post(
    "/uploads",
    status_code=201,
    response_model=UploadOut,
    openapi_extra={"requestBody": _BODY},
    responses={
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        413: {
            "model": ErrorOut,
            "description": "a file over SEGPIPE_MAX_UPLOAD_MB, or more files than SEGPIPE_MAX_UPLOAD_FILES",
        },
        415: {"model": ErrorOut, "description": "a file that is not an image (named), or not multipart/form-data"},
        422: {"model": ErrorOut, "description": "no files, or a form field that is not a file"},
    },
)
async def upload_images(
    request: Request, ctx: ApiContext = Depends(context), _who: Principal = Depends(engineer)
) -> UploadOut:
    """Store image files (multipart/form-data file parts, any field name) for a predict job.

    Each file is checked by content (PNG, JPEG, BMP, TIFF, WebP, GIF) and gets a safe name; its
    ``image_key`` is what the predict job stores its masks under. Nothing is kept if any file is refused.
    """
    boundary = multipart_boundary(request.headers.get("content-type"))
    upload_id = uuid.uuid4().hex
    folder = ctx.settings.roots[0] / UPLOADS_DIR / upload_id
    max_bytes = int(ctx.settings.max_upload_mb * 2**20)
    await run_in_threadpool(folder.mkdir, parents=True)
    writer = MultipartImageWriter(folder, boundary, max_file_bytes=max_bytes, max_files=ctx.settings.max_upload_files,
                                  limits=ImageLimits.of(ctx.settings))
    try:
        # The body is parsed as it arrives: file writes happen in the thread pool, off the event loop.
        async for chunk in request.stream():
            if chunk:
                await run_in_threadpool(writer.write, chunk)
        stored = await run_in_threadpool(writer.finish)
    except BaseException:
        # Also on a client disconnect or cancellation: synchronous, so cancellation cannot skip it.
        writer.abort()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    files = [UploadedFile(**asdict(item)) for item in stored]
    return UploadOut(upload_id=upload_id, images=f"{UPLOADS_DIR}/{upload_id}", files=files)
