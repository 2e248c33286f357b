"""A predict job's images, for browsing: ``GET /jobs/{id}/images`` (one page of keys with instance counts),
``GET /jobs/{id}/categories`` (what it found), ``GET /jobs/{id}/label-next`` (the images to label next, as a
list or as a Label Studio / CVAT file: `segpipe.api.label_next`) and ``GET /jobs/{id}/images/{key}/file``
(the source image, from inside the data roots). All annotator+.
The review pages draw masks over these files in the browser.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from segpipe.api.auth import Principal, annotator
from segpipe.api.deps import ApiContext, context
from segpipe.api.errors import ApiError
from segpipe.api.image_lookup import BROWSER_TYPES
from segpipe.api.schemas import MAX_INT64, ErrorOut
from segpipe.masks.rows import DEFAULT_SCORE_THRESHOLD
from segpipe.ranking.select import DEFAULT_MIN_DISTANCE
from segpipe.stores.prediction_pages import image_page, job_categories
from segpipe.vocabulary import Segmentation

router = APIRouter(prefix="/jobs", tags=["job images"])
MAX_PAGE = 500
MAX_LABEL_NEXT = 10_000
_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}}


@router.get("/{job_id}/images", responses=_ERRORS)
def list_job_images(
    job_id: str,
    limit: int = Query(100, ge=1, le=MAX_PAGE),
    offset: int = Query(0, ge=0, le=MAX_INT64),
    ctx: ApiContext = Depends(context),
    _who: Principal = Depends(annotator),
) -> dict[str, object]:
    """The images the job has stored, ordered by key: ``{items: [{image_key, instances, height, width}], total}``."""
    ctx.stores.jobs.get(job_id)  # 404 for an unknown job
    entries, total = image_page(ctx.stores.db, job_id, limit=limit, offset=offset)
    items = [{"image_key": e.image_key, "instances": e.instances, "height": e.height, "width": e.width} for e in entries]
    return {"job_id": job_id, "items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/{job_id}/categories", responses=_ERRORS)
def list_job_categories(
    job_id: str, ctx: ApiContext = Depends(context), _who: Principal = Depends(annotator)
) -> list[dict[str, object]]:
    """The categories the job found: ``[{category_id, category_name, instances, max_score}]``."""
    ctx.stores.jobs.get(job_id)
    return [
        {"category_id": c.category_id, "category_name": c.category_name, "instances": c.instances,
         "max_score": c.max_score}
        for c in job_categories(ctx.stores.db, job_id)
    ]


@router.get(
    "/{job_id}/label-next",
    response_model=None,
    responses={
        200: {"description": "json: the ranking; label-studio: a Label Studio tasks JSON file (one task per image, "
              "in rank order, with the job's prediction); cvat: a zip in CVAT's COCO 1.0 layout (annotations, "
              "images, label_next.txt) holding only these images, in rank order",
              "content": {"application/json": {}, "application/zip": {}}},
        409: {"model": ErrorOut, "description": "the job is not a predict job, or (files) none of its images "
              "carries an uncertainty"},
        422: {"model": ErrorOut, "description": "unknown format, top out of range, a format that does not fit "
              "the job's task, or a model whose classes cannot be read"},
        **_ERRORS,
    },
)
def label_next(
    job_id: str,
    top: int = Query(50, ge=1, le=MAX_LABEL_NEXT, description="how many images to list"),
    min_distance: int = Query(DEFAULT_MIN_DISTANCE, ge=0, le=64,
                              description="fingerprint bits two listed images differ in at least (0: no diversity rule)"),
    format: Literal["json", "label-studio", "cvat"] = Query(
        "json", description="json: the ranking; label-studio: Label Studio tasks to import; cvat: a CVAT COCO 1.0 "
        "subset (images and pre-labels)"),
    image_url_prefix: str = Query("/data/local-files/?d=", max_length=2000,
                                  description="label-studio: data.image = this prefix + the image's file name"),
    score_threshold: float = Query(DEFAULT_SCORE_THRESHOLD, ge=0, le=1,
                                   description="label-studio, cvat: instances scoring below it are left out"),
    segmentation: Segmentation = Query("rle", description="masks in label-studio / cvat"),
    ctx: ApiContext = Depends(context),
    _who: Principal = Depends(annotator),
) -> dict[str, object] | FileResponse:
    """What to label next from this predict job: its ``top`` most uncertain images, near-duplicates kept out
    (``near_duplicates`` names each skipped image and the listed one it duplicates); with ``format``, the
    same images in that order as a file to import into Label Studio or CVAT, with the job's predictions."""
    from segpipe.api.label_next import download_name, ranked_job, write_file

    ranked = ranked_job(ctx, job_id, top, min_distance)
    if format == "json":
        return ranked.as_json()
    if not ranked.keys:
        raise ApiError(409, f"job {job_id} has no image with an uncertainty to rank ({ranked.scored} scored): "
                            "it stored nothing yet, or predicted before segpipe ranked images")
    scratch = Path(tempfile.mkdtemp(prefix=f"segpipe-label-next-{job_id}-"))
    cleanup = BackgroundTask(shutil.rmtree, scratch, ignore_errors=True)
    try:
        # polygons in the cvat subset; "both" is Label Studio's brush and polygon pair
        shape = "polygons" if format == "cvat" and segmentation == "both" else segmentation
        path = write_file(ctx, ranked, format, scratch, image_url_prefix=image_url_prefix,
                          score_threshold=score_threshold, segmentation=shape)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    media = "application/json" if format == "label-studio" else "application/zip"
    return FileResponse(path, media_type=media, filename=download_name(job_id, format, len(ranked.keys)),
                        content_disposition_type="attachment", background=cleanup,
                        headers={"X-Content-Type-Options": "nosniff"})


@router.get(
    "/{job_id}/images/{image_key:path}/file",
    response_model=None,
    responses={**_ERRORS, 200: {"content": {"image/png": {}, "image/jpeg": {}}}},
)
def job_image_file(
    job_id: str, image_key: str, ctx: ApiContext = Depends(context), _who: Principal = Depends(annotator)
) -> Response:
    """The source image of one of the job's images (TIFF and other formats browsers cannot draw come as PNG)."""
    path = ctx.images.path(job_id, image_key)
    media_type = BROWSER_TYPES.get(path.suffix.lower())
    headers = {"Cache-Control": "private, max-age=300"}
    if media_type is not None:
        return FileResponse(path, media_type=media_type, headers=headers)
    import cv2

    from segpipe.data.images import read_image

    _ok, png = cv2.imencode(".png", read_image(path)[:, :, ::-1])
    return Response(png.tobytes(), media_type="image/png", headers=headers)
