"""Jobs: submit (engineer+), list and read (annotator+), cancel (engineer+).

Routes are plain ``def``: the stores and the broker client block, so FastAPI runs them in its
thread pool rather than on the event loop.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from segpipe import service
from segpipe.api.auth import Principal, annotator, engineer
from segpipe.api.deps import ApiContext, context
from segpipe.api.schemas import (
    MAX_INT64,
    ErrorOut,
    JobDetail,
    JobKind,
    JobOut,
    JobPage,
    JobState,
    JobSubmit,
    job_detail,
    job_out,
)

router = APIRouter(prefix="/jobs", tags=["jobs"])
MAX_PAGE = 200

_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}


@router.post(
    "",
    status_code=201,
    response_model=JobDetail,
    responses={
        **_AUTH_ERRORS,
        403: {"model": ErrorOut, "description": "role too low, or a path outside the data roots (named)"},
        413: {"model": ErrorOut, "description": "body larger than SEGPIPE_MAX_CONFIG_KB"},
        422: {"model": ErrorOut, "description": "invalid config: the message names the key"},
    },
)
def submit_job(
    body: JobSubmit,
    response: Response,
    ctx: ApiContext = Depends(context),
    who: Principal = Depends(engineer),
) -> JobDetail:
    """Validate the job document, store a queued job and publish its message to the worker queue.

    Every path in the document must lie inside the data roots (a model may also point into the
    artifact root); a path outside them is refused with 403 naming it.
    """
    job = service.submit(
        ctx.stores,
        ctx.celery,
        ctx.settings,
        body.kind,
        body.spec(),
        submitted_by=who.name,
        queue=body.queue,
        model_name=body.model_name,
    )
    response.headers["Location"] = f"/jobs/{job.id}"
    return job_detail(job, with_traceback=False)


@router.get("", response_model=JobPage, responses=_AUTH_ERRORS)
def list_jobs(
    state: JobState | None = None,
    kind: JobKind | None = None,
    limit: int = Query(50, ge=1, le=MAX_PAGE),
    offset: int = Query(0, ge=0, le=MAX_INT64),
    ctx: ApiContext = Depends(context),
    _who: Principal = Depends(annotator),
) -> JobPage:
    """Jobs newest first, optionally of one state and/or kind; ``total`` counts all matching jobs."""
    jobs, total = ctx.stores.jobs.list(state=state, kind=kind, limit=limit, offset=offset)
    return JobPage(items=[job_out(job) for job in jobs], total=total, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobDetail, responses={**_AUTH_ERRORS, 404: {"model": ErrorOut}})
def get_job(job_id: str, ctx: ApiContext = Depends(context), who: Principal = Depends(annotator)) -> JobDetail:
    """State, progress (epoch/step, images done/total, metrics), error, times, worker and artifacts."""
    return job_detail(ctx.stores.jobs.get(job_id), with_traceback=who.has("engineer"))


@router.post("/{job_id}/cancel", response_model=JobOut, responses={**_AUTH_ERRORS, 404: {"model": ErrorOut}})
def cancel_job(job_id: str, ctx: ApiContext = Depends(context), _who: Principal = Depends(engineer)) -> JobOut:
    """A queued job is cancelled at once; a running one stops at its next step (``cancel_requested``
    until then), keeping its checkpoint; a finished job is left as it is."""
    service.cancel(ctx.stores, ctx.celery, job_id)
    return job_out(ctx.stores.jobs.get(job_id))
