"""Model versions: list and read with their promotion decisions (annotator+); promote, roll back and
retrain by hand (engineer+). Every promotion and rollback is recorded as a decision."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi import Path as PathParam

from segpipe.api.auth import Principal, annotator, engineer
from segpipe.api.deps import ApiContext, context
from segpipe.api.schemas import (
    MAX_INT32,
    DecisionOut,
    ErrorOut,
    ModelDetail,
    ModelSummary,
    ModelVersionOut,
    Promote,
    RetrainOut,
    Rollback,
    VersionConfigOut,
    decision_out,
    version_out,
)
from segpipe.errors import NotFoundError

router = APIRouter(prefix="/models", tags=["models"])
_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}}


@router.get("", response_model=list[ModelSummary], responses=_ERRORS)
def list_models(ctx: ApiContext = Depends(context), _who: Principal = Depends(annotator)) -> list[ModelSummary]:
    """Every model name with its number of versions, newest version and production version."""
    summaries = []
    # versions.list() is ordered by name, then newest first
    for name, group in groupby(ctx.stores.versions.list(), key=lambda v: v.name):
        versions = list(group)
        production = next((v.version for v in versions if v.stage == "production"), None)
        summaries.append(
            ModelSummary(
                name=name,
                task=versions[0].task,
                versions=len(versions),
                latest_version=versions[0].version,
                production_version=production,
            )
        )
    return summaries


@router.get("/{name}", response_model=ModelDetail, responses=_ERRORS)
def get_model(name: str, ctx: ApiContext = Depends(context), _who: Principal = Depends(annotator)) -> ModelDetail:
    """All versions of one model, newest first, with metrics, dataset hash, checkpoint and parent, and
    its promotion decisions (gate, by hand, rollback) with their reasons and numbers."""
    versions = ctx.stores.versions.list(name=name)
    if not versions:
        raise NotFoundError(f"model {name!r} has no versions")
    production = next((v.version for v in versions if v.stage == "production"), None)
    decisions = [decision_out(d) for d in ctx.stores.decisions.list(name)]
    from segpipe.jobs.versions import version_files

    outs = [version_out(v).model_copy(update=version_files(v, ctx.stores)) for v in versions]
    return ModelDetail(name=name, production_version=production, versions=outs, decisions=decisions)


@router.get("/{name}/versions/{version}/config", response_model=VersionConfigOut, responses=_ERRORS)
def version_config(
    name: str, version: int = PathParam(ge=1, le=MAX_INT32), ctx: ApiContext = Depends(context),
    _who: Principal = Depends(annotator),
) -> VersionConfigOut:
    """The resolved training config of one version (YAML text, as saved beside its checkpoint)."""
    row = ctx.stores.versions.get(name, version)
    return VersionConfigOut(name=name, version=version, task=row.task, config=row.config)


@router.get("/{name}/decisions", response_model=list[DecisionOut], responses=_ERRORS)
def list_decisions(
    name: str,
    limit: int = Query(100, ge=1, le=1000),
    ctx: ApiContext = Depends(context),
    _who: Principal = Depends(annotator),
) -> list[DecisionOut]:
    """The model's promotion decisions, newest first."""
    if ctx.stores.versions.latest(name) is None:
        raise NotFoundError(f"model {name!r} has no versions")
    return [decision_out(d) for d in ctx.stores.decisions.list(name, limit=limit)]


@router.post("/{name}/promote", response_model=ModelVersionOut, responses=_ERRORS)
def promote(
    name: str, body: Promote, ctx: ApiContext = Depends(context), who: Principal = Depends(engineer)
) -> ModelVersionOut:
    """Make ``version`` the production version of ``name``; the previous production version is archived."""
    from segpipe.retrain.promotion import promote_by_hand, tell_label_studio

    promote_by_hand(ctx.stores, name, body.version, by=who.name, reason=body.reason)
    tell_label_studio(ctx.settings, ctx.stores, name)
    return version_out(ctx.stores.versions.get(name, body.version))


@router.post("/{name}/rollback", response_model=DecisionOut, responses={**_ERRORS, 422: {"model": ErrorOut}})
def rollback(
    name: str, body: Rollback | None = None, ctx: ApiContext = Depends(context), who: Principal = Depends(engineer)
) -> DecisionOut:
    """Put ``to`` — by default the newest earlier version that was production — back into production.
    Predict jobs naming ``NAME@production`` use it from their start on."""
    from segpipe.retrain.promotion import rollback as do_rollback
    from segpipe.retrain.promotion import tell_label_studio

    decision = do_rollback(ctx.stores, name, to=body.to if body else None, by=who.name,
                           reason=body.reason if body else None)
    tell_label_studio(ctx.settings, ctx.stores, name)
    return decision_out(decision)


@router.post(
    "/{name}/retrain",
    status_code=202,
    response_model=RetrainOut,
    responses={**_ERRORS, 503: {"model": ErrorOut, "description": "the broker did not accept the job"}},
)
def retrain(
    name: str, response: Response, ctx: ApiContext = Depends(context), who: Principal = Depends(engineer)
) -> RetrainOut:
    """Queue a retraining of a scheduled model now, whatever its data. If one is already queued or
    running, nothing new is queued and that job is answered (``created: false``, status 200)."""
    from segpipe.retrain.trigger import configured_schedule, queue_retrain

    entry = configured_schedule(ctx.settings).get(name)
    queued = queue_retrain(ctx.stores, ctx.celery, ctx.settings, entry, trigger=f"by hand ({who.name})",
                           submitted_by=who.name)
    if not queued.created:
        response.status_code = 200
    return RetrainOut(job_id=queued.job.id, created=queued.created, state=queued.job.state)
