"""``GET /metrics``: Prometheus metrics of the API processes, the jobs in the store and the broker's queues.

A scrape authenticates with ``Authorization: Bearer <SEGPIPE_METRICS_TOKEN>`` (a token that opens nothing
else), or with an admin token. Not in the OpenAPI document: it is for Prometheus, not for clients.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials
from starlette.responses import Response

from segpipe.api.auth import bearer_scheme, caller, presented_token
from segpipe.api.deps import ApiContext, context
from segpipe.api.errors import ApiError
from segpipe.job_kinds import QUEUES
from segpipe.metrics.collectors import BuildInfo, JobStates, QueueDepth
from segpipe.metrics.exposition import scrape

router = APIRouter(tags=["metrics"])


def authorize_scrape(request: Request, ctx: ApiContext) -> None:
    """The metrics token, or an admin's token; 401/403 `ApiError` otherwise."""
    token = presented_token(request)
    expected = ctx.settings.metrics_token
    if token is not None and expected and hmac.compare_digest(token.encode(), expected.encode()):
        return
    who = caller(request)
    if not who.has("admin"):
        raise ApiError(403, f"GET /metrics needs SEGPIPE_METRICS_TOKEN or an admin token; yours has {who.role}")


@router.get("/metrics", include_in_schema=False)
async def metrics(
    request: Request,
    ctx: ApiContext = Depends(context),
    _credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
) -> Response:
    authorize_scrape(request, ctx)
    from prometheus_client import CONTENT_TYPE_LATEST

    collectors = [BuildInfo("api"), JobStates(ctx.stores), QueueDepth(ctx.celery, QUEUES)]
    body = await run_in_threadpool(scrape, collectors)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
