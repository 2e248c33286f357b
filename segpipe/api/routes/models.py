"""Model versions: list and read (annotator+), promote a version to production (engineer+)."""

from __future__ import annotations

from itertools import groupby

from fastapi import APIRouter, Depends

from segpipe.api.auth import Principal, annotator, engineer
from segpipe.api.deps import ApiContext, context
from segpipe.api.schemas import ErrorOut, ModelDetail, ModelSummary, ModelVersionOut, Promote, version_out
from segpipe.errors import NotFoundError

router = APIRouter(prefix="/models", tags=["models"])
_ERRORS = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}}


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
    """All versions of one model, newest first, with metrics, dataset hash, checkpoint and parent."""
    versions = ctx.stores.versions.list(name=name)
    if not versions:
        raise NotFoundError(f"model {name!r} has no versions")
    production = next((v.version for v in versions if v.stage == "production"), None)
    return ModelDetail(name=name, production_version=production, versions=[version_out(v) for v in versions])


@router.post("/{name}/promote", response_model=ModelVersionOut, responses=_ERRORS)
def promote(
    name: str, body: Promote, ctx: ApiContext = Depends(context), _who: Principal = Depends(engineer)
) -> ModelVersionOut:
    """Make ``version`` the production version of ``name``; the previous production version is archived."""
    return version_out(ctx.stores.versions.promote(name, body.version))
