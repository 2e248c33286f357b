"""Dataset snapshots over HTTP: list and read them (annotator+); pull an annotation tool's export that
lies in a data root into a new one (engineer+). The heavy part — reading the archive — runs in the
thread pool; nothing here imports torch."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Response
from fastapi.concurrency import run_in_threadpool

from segpipe.api.auth import Principal, annotator, engineer
from segpipe.api.deps import ApiContext, context
from segpipe.api.errors import ApiError
from segpipe.api.schemas import ErrorOut, SnapshotOut, SnapshotPull
from segpipe.paths import confine
from segpipe.snapshots.formats import ARCHIVE_FORMATS, PullContext
from segpipe.snapshots.pull import pull
from segpipe.snapshots.store import Snapshot, SnapshotStore
from segpipe.storage.uri import is_uri

router = APIRouter(prefix="/snapshots", tags=["snapshots"])
_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}}


def _store(ctx: ApiContext) -> SnapshotStore:
    return SnapshotStore.from_settings(ctx.settings)


def _out(snapshot: Snapshot) -> SnapshotOut:
    # where it lies relative to the artifact root: server paths stay on the server
    return SnapshotOut(**(asdict(snapshot) | {"path": f"snapshots/{snapshot.id}"}))


@router.get("", response_model=list[SnapshotOut], responses=_ERRORS)
def list_snapshots(ctx: ApiContext = Depends(context), _who: Principal = Depends(annotator)) -> list[SnapshotOut]:
    """Every snapshot, newest first: id, content hash, source, format, counts, labels and time."""
    return [_out(s) for s in _store(ctx).list()]


@router.get("/{snapshot_id}", response_model=SnapshotOut, responses=_ERRORS)
def get_snapshot(snapshot_id: str, ctx: ApiContext = Depends(context),
                 _who: Principal = Depends(annotator)) -> SnapshotOut:
    return _out(_store(ctx).get(snapshot_id))


@router.post("", status_code=201, response_model=SnapshotOut,
             responses={**_ERRORS, 422: {"model": ErrorOut, "description": "not an archive of that format"}})
async def pull_snapshot(body: SnapshotPull, response: Response, ctx: ApiContext = Depends(context),
                        _who: Principal = Depends(engineer)) -> SnapshotOut:
    """Pull ``source`` as ``format``: an export archive in a data root (relative to the first root, or
    absolute), or for ``label-studio`` a project id on the configured Label Studio with ``model`` naming
    the model whose classes its labels map to. 201 with a new snapshot; 200 with the existing one when the
    content is unchanged."""
    source, categories, category_ids = body.source, None, None
    if body.format in ARCHIVE_FORMATS:
        path = confine(body.source, ctx.settings.roots, what="archive")
        if is_uri(path) or not path.is_file():
            raise ApiError(404, f"archive {body.source!r} is not a file in the data roots")
        source = str(path)
    elif body.format == "label-studio":
        if body.model is None:
            raise ApiError(422, "a label-studio pull needs 'model': the model whose classes the labels map to")
        from segpipe.api.labelstudio.model_info import resolve_model

        model = resolve_model(ctx.stores, body.model)
        categories, category_ids = model.class_names, [cid for cid, _name in model.categories]
    snapshot, new = await run_in_threadpool(pull, _store(ctx), body.format, source,
                                            PullContext(ctx.settings, categories, category_ids))
    if not new:
        response.status_code = 200
    return _out(snapshot)
