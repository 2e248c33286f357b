"""One image's masks: ``GET /images/{image_key}/masks?job=…&format=rle|polygons|png`` (annotator+).

Without ``job``, the masks of the most recently finished succeeded job that processed the image
(the same choice as `PredictionStore.for_image`). The job that answered is in the ``X-Segpipe-Job``
header (and in the JSON body). An image that job processed and found empty gives an empty list (or
a blank PNG); 404 only when no job has stored anything for it.

This is the hot path for annotation tools: one statement, and RLE JSON written without a pydantic
round trip (`segpipe.api.mask_reads`); the schemas still document the shape in OpenAPI.
"""

from __future__ import annotations

from typing import Literal

import orjson
from fastapi import APIRouter, Depends, Query, Response

from segpipe.api.auth import Principal, annotator
from segpipe.api.deps import ApiContext, context
from segpipe.api.errors import ApiError
from segpipe.api.schemas import ErrorOut, ImageMasks, ImagePolygons
from segpipe.masks.stored import blank_png, rows_to_png, rows_to_polygons

router = APIRouter(tags=["masks"])
MaskFormat = Literal["rle", "polygons", "png"]


@router.get(
    "/images/{image_key:path}/masks",
    response_model=None,
    responses={
        200: {
            "description": "rle: ImageMasks JSON; polygons: ImagePolygons JSON; png: an instance-id map "
            "(value = instance + 1), or for semantic/binary jobs the label map (category ids; binary 255)",
            "content": {
                "application/json": {
                    "schema": {"oneOf": [ImageMasks.model_json_schema(), ImagePolygons.model_json_schema()]}
                },
                "image/png": {},
            },
        },
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        404: {"model": ErrorOut, "description": "no job has stored predictions for the image"},
    },
)
def image_masks(
    image_key: str,
    job: str | None = Query(None, description="a predict job id; default: the latest succeeded job with this image"),
    format: MaskFormat = Query("rle", description="rle (compressed COCO RLE), polygons (COCO polygons) or png"),
    ctx: ApiContext = Depends(context),
    _who: Principal = Depends(annotator),
) -> Response:
    found = ctx.masks.read(image_key, job)
    if found is None:
        which = f"job {job}" if job is not None else "any succeeded job"
        raise ApiError(404, f"no predictions stored for image {image_key!r} by {which}")
    headers = {"X-Segpipe-Job": found.job_id}
    if format == "rle":
        return Response(found.to_json(), media_type="application/json", headers=headers)
    rows = found.rows()
    if format == "polygons":
        payload = {
            "image_key": image_key,
            "job_id": found.job_id,
            "height": found.height,
            "width": found.width,
            "instances": rows_to_polygons(rows),
        }
        return Response(orjson.dumps(payload), media_type="application/json", headers=headers)
    if rows:
        return Response(rows_to_png(rows, ctx.tasks.task_of(found.job_id)), media_type="image/png", headers=headers)
    if found.height is None or found.width is None:
        raise ApiError(
            404, f"job {found.job_id} found no instances in image {image_key!r} and stored no image size to draw"
        )
    return Response(blank_png(found.height, found.width), media_type="image/png", headers=headers)
