"""Annotation tools tell the retraining schedule that a dataset changed (engineer+).

Debounced: the first signal starts a window of the schedule's ``debounce_seconds``; signals within it
fold into that one; the first tick after the window checks the dataset's content hash and queues a
retraining only if the content is new and none is queued or running for the model (the tick's lock).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends

from segpipe.api.auth import Principal, engineer
from segpipe.api.deps import ApiContext, context
from segpipe.api.schemas import DatasetChangedOut, ErrorOut, SignalledModel

router = APIRouter(prefix="/datasets", tags=["datasets"])
_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}}


@router.post("/{name}/changed", status_code=202, response_model=DatasetChangedOut, responses=_ERRORS)
def dataset_changed(
    name: str, ctx: ApiContext = Depends(context), _who: Principal = Depends(engineer)
) -> DatasetChangedOut:
    """Signal new annotations in dataset ``name`` (as named in the schedule's ``dataset.name``; 404 lists
    the watched names). Answers which models will check it and from when."""
    from segpipe.retrain.trigger import configured_schedule, signal_dataset

    schedule = configured_schedule(ctx.settings)
    slots = signal_dataset(ctx.stores, schedule, name)
    debounce: timedelta = schedule.debounce
    models = [SignalledModel(name=s.name, signalled_at=s.signalled_at, check_after=s.signalled_at + debounce)
              for s in slots if s.signalled_at is not None]
    return DatasetChangedOut(dataset=name, debounce_seconds=debounce.total_seconds(), models=models)
