"""A predict job's images, for browsing: ``GET /jobs/{id}/images`` (one page of keys with instance counts),
``GET /jobs/{id}/categories`` (what it found), ``GET /jobs/{id}/label-next`` (the images to label next)
and ``GET /jobs/{id}/images/{key}/file`` (the source image, from inside the data roots). All annotator+.
The review pages draw masks over these files in the browser.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import FileResponse

from segpipe.api.auth import Principal, annotator
from segpipe.api.deps import context, ApiContext
from segpipe.api.job_images import BROWSER_TYPES
from segpipe.api.schemas import MAX_INT64, ErrorOut
from segpipe.ranking.select import DEFAULT_MIN_DISTANCE, Candidate, rank
from segpipe.stores.prediction_pages import image_page, job_categories

router = APIRouter(prefix="/jobs", tags=["job images"])
MAX_PAGE = 500
_ERRORS = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}}


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


@router.get("/{job_id}/label-next", responses=_ERRORS)
def label_next(
    job_id: str,
    top: int = Query(50, ge=1, le=10_000, description="how many images to list"),
    min_distance: int = Query(DEFAULT_MIN_DISTANCE, ge=0, le=64,
                              description="fingerprint bits two listed images differ in at least (0: no diversity rule)"),
    ctx: ApiContext = Depends(context),
    _who: Principal = Depends(annotator),
) -> dict[str, object]:
    """What to label next from this predict job: its ``top`` most uncertain images, near-duplicates kept out
    (``near_duplicates`` names each skipped image and the listed one it duplicates)."""
    ctx.stores.jobs.get(job_id)
    candidates = [Candidate(r.key, r.uncertainty, int(r.fingerprint, 16) if r.fingerprint else None)
                  for r in ctx.stores.predictions.ranked(job_id)]
    ranking = rank(candidates, top, min_distance)
    return {
        "job_id": job_id,
        "images": [{"rank": i + 1, "image_key": c.key, "uncertainty": c.uncertainty}
                   for i, c in enumerate(ranking.chosen)],
        "near_duplicates": [{"image_key": k, "duplicate_of": v} for k, v in ranking.duplicates.items()],
        "scored": len(candidates),
    }


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

    ok, png = cv2.imencode(".png", read_image(path)[:, :, ::-1])
    return Response(png.tobytes(), media_type="image/png", headers=headers)
