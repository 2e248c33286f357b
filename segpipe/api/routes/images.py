"""One image's masks: ``GET /images/{image_key}/masks?job=…&format=rle|polygons|png`` (annotator+).

``polygons`` is the ``polygons`` export's schema and ``png`` the ``png`` export's class map (pixel = the
original category id, 0 = none; ``map=instances`` for the instance map, pixel = instance + 1): the same
answers as the files (`segpipe.masks.formats`).

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
from segpipe.masks.formats import png as png_format
from segpipe.masks.formats import polygons as polygons_format

router = APIRouter(tags=["masks"])
MaskFormat = Literal["rle", "polygons", "png"]


@router.get(
    "/images/{image_key:path}/masks",
    response_model=None,
    responses={
        200: {
            "description": "rle: ImageMasks JSON; polygons: ImagePolygons JSON; png: the class map (value = "
            "original category id, 0 = none; higher scores on top), or with map=instances the instance map "
            "(value = instance + 1)",
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
    map: Literal["classes", "instances"] = Query("classes", description="png: class map or instance map"),
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
            "image_id": int(image_key) if image_key.isdigit() else image_key,
            "file_name": image_key,
            "job_id": found.job_id,
            "height": found.height,
            "width": found.width,
            "objects": polygons_format.objects(rows),
        }
        return Response(orjson.dumps(payload), media_type="application/json", headers=headers)
    height, width = (rows[0].height, rows[0].width) if rows else (found.height, found.width)
    if height is None or width is None:
        raise ApiError(
            404, f"job {found.job_id} found no instances in image {image_key!r} and stored no image size to draw"
        )
    if map == "instances":
        picture = png_format.png_bytes(png_format.instance_map(rows, height, width), palette=False)
    else:
        picture = png_format.class_map_png(rows, height, width)
    return Response(picture, media_type="image/png", headers=headers)
