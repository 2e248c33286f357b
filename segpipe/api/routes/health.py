"""``GET /health``: no auth; for load balancers and humans. 503 when the store cannot be reached."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from segpipe.api.deps import ApiContext, context
from segpipe.api.schemas import Health

router = APIRouter(tags=["health"])


def _ping(ctx: ApiContext) -> dict[str, object]:
    try:
        with ctx.stores.db.read() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "unreachable"; its type and message say why
        return {"ok": False, "dialect": ctx.stores.db.dialect, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    return {"ok": True, "dialect": ctx.stores.db.dialect}


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(request: Request, ctx: ApiContext = Depends(context)) -> JSONResponse:
    """Whether the store answers, which kind of broker jobs go to, and the segpipe version."""
    store = await run_in_threadpool(_ping, ctx)
    body = Health(
        status="ok" if store["ok"] else "degraded",
        store=store,
        broker=str(ctx.celery.conf.broker_url or ctx.settings.broker).split("://", 1)[0],
        version=request.app.version,
    )
    return JSONResponse(body.model_dump(), status_code=200 if store["ok"] else 503)
