"""The Label Studio ML backend protocol, one backend per model version reference:
``/ls/NAME@production/`` is the URL a Label Studio project connects to (Settings → Model).

- ``GET  health``  — ``{"status": "UP", "model_version"}``;
- ``POST setup``   — checks the project's labeling config against the model's classes (422 naming both
  lists when they differ) and answers ``{"model_version": "NAME@N"}``; 503 while predictions cannot be
  answered (`interactive_trouble`), which Label Studio shows as the backend's "Error" state;
- ``POST predict`` — ``{"tasks": [...], "label_config"}`` in, ``{"results": [{"result", "score",
  "model_version"}]}`` out, one per task, in task order (`predictions`: stored, else an interactive job);
  with an interactive context (a rectangle drawn with the smart tool, `box_context`) the one task's
  answer is the mask of the object in that box (`box_requests`, an instance model only);
- ``POST webhook`` — annotation created / updated / deleted (and "start training") → the debounced
  "dataset changed" signal of the model's retraining schedule entry;
- ``POST train`` — "start training" in Label Studio's older protocol: the same signal;
- ``GET  versions`` — the version answered now.
Regions come from the export layer's Label Studio converter (`segpipe.masks.formats.label_studio`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from segpipe.api.auth import Principal
from segpipe.api.deps import ApiContext, context
from segpipe.api.errors import ApiError
from segpipe.api.labelstudio.auth import ls_caller
from segpipe.api.labelstudio.box_context import interactive_context, parse_box_prompt
from segpipe.api.labelstudio.box_requests import box_result, check_prompt
from segpipe.api.labelstudio.label_config import Control, choose_control
from segpipe.api.labelstudio.model_info import ModelInfo, resolve_model
from segpipe.api.labelstudio.predictions import (
    Found,
    content_key,
    find_stored,
    interactive_trouble,
    predict_now,
)
from segpipe.api.labelstudio.task_images import TaskImage, read_task_image
from segpipe.masks.formats import prelabel_rows
from segpipe.masks.formats.label_studio import (
    FROM_NAMES,
    TO_NAME,
    region_kinds,
    regions,
)
from segpipe.masks.rows import DEFAULT_SCORE_THRESHOLD

router = APIRouter(prefix="/ls/{model_ref}", tags=["label studio ml backend"])
ANNOTATION_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED",
                                "ANNOTATIONS_DELETED", "ANNOTATION_DELETED", "START_TRAINING"})
MAX_LABEL_CONFIG = 256 * 1024


class SetupIn(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    project: str | None = None
    label_config: str = Field("", alias="schema", max_length=MAX_LABEL_CONFIG)


class PredictIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    tasks: list[dict[str, Any]] = Field(min_length=1)
    project: str | None = None
    label_config: str | None = Field(None, max_length=MAX_LABEL_CONFIG)
    params: dict[str, Any] | None = Field(None, description="Label Studio's: project credentials and, for an "
                                                             "interactive request, the drawn regions (context)")
    context: Any = Field(None, description="the interactive context, where a caller sends it outside params")


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    action: str = Field(max_length=100)
    project: dict[str, Any] | None = None


def _default_control(model: ModelInfo) -> Control:
    kind = region_kinds(model.task)[0]
    return Control(tag="", kind=kind, from_name=FROM_NAMES[kind], to_name=TO_NAME, image_key="image",
                   labels=tuple(model.class_names))


@router.get("/health")
def health(model_ref: str, ctx: ApiContext = Depends(context), _who: Principal = Depends(ls_caller)) -> dict[str, Any]:
    model = resolve_model(ctx.stores, model_ref)
    return {"status": "UP", "model_class": "segpipe", "model_version": model.label}


@router.get("/versions")
def versions(model_ref: str, ctx: ApiContext = Depends(context), _who: Principal = Depends(ls_caller)) -> dict[str, Any]:
    model = resolve_model(ctx.stores, model_ref)
    return {"versions": [model.label], "model_version": model.label}


@router.post("/setup")
def setup(
    model_ref: str, body: SetupIn, ctx: ApiContext = Depends(context), _who: Principal = Depends(ls_caller)
) -> dict[str, Any]:
    """Check the labeling config against the model's classes; answer the model version."""
    model = resolve_model(ctx.stores, model_ref)
    answer: dict[str, Any] = {"model_version": model.label}
    if body.label_config.strip():
        control = choose_control(body.label_config, model.task, model.class_names, model.label)
        answer |= {"from_name": control.from_name, "to_name": control.to_name}
    trouble = interactive_trouble(ctx, model)
    if trouble is not None:  # Label Studio shows a failing setup as the backend's "Error" state
        raise ApiError(503, trouble.reason, headers={"Retry-After": "10"})
    return answer


def _task_image(task: dict[str, Any], index: int, control: Control, ctx: ApiContext) -> tuple[object, TaskImage]:
    task_id = task.get("id", f"#{index}")
    data = task.get("data")
    if not isinstance(data, dict):
        raise ApiError(422, f"task {task_id}: has no 'data' object")
    if control.image_key not in data:
        raise ApiError(422, f"task {task_id}: data has no {control.image_key!r} key (the labeling config's "
                            f"<Image value=\"${control.image_key}\">); keys: {', '.join(map(str, data)) or 'none'}")
    return task_id, read_task_image(data[control.image_key], ctx.settings, task_id)


def _result(found: Found, model: ModelInfo, control: Control) -> dict[str, Any]:
    task_kind = "detection" if control.kind == "rectangle" else model.task
    segmentation = "polygons" if control.kind == "polygon" else "rle"
    # stored rows reach down to the job's score floor: Label Studio gets the default view, without duplicates
    rows = prelabel_rows(found.rows, model.task, DEFAULT_SCORE_THRESHOLD, suppress=True)
    result = regions(rows, found.height, found.width, task_kind, segmentation)
    for region in result:
        region["from_name"], region["to_name"] = control.from_name, control.to_name
    return {"result": result, "score": prediction_score(found, rows),
            "model_version": model.label, "segpipe": {"job_id": found.job_id, "image_key": found.image_key,
                                                      "stored": found.cached}}


def prediction_score(found: Found, rows: list[Any]) -> float:
    """The prediction's ``score``, which Label Studio's data manager sorts by: segpipe's confidence in the
    whole image, 1 − its uncertainty, so sorting ascending puts what to label next first; the mean instance
    score for predictions stored before uncertainty was. Not rounded: a confident model's uncertainties
    differ in the seventh decimal, and ties would sort in Label Studio's task order, not segpipe's."""
    if found.uncertainty is not None:
        return 1.0 - found.uncertainty
    scores = [r.score for r in rows if r.score is not None]
    return float(sum(scores) / len(scores)) if scores else 0.0


@router.post("/predict")
def predict(
    model_ref: str, body: PredictIn, ctx: ApiContext = Depends(context), who: Principal = Depends(ls_caller)
) -> dict[str, Any]:
    """Label Studio results for each task, in order: stored predictions of the version, else computed now."""
    model = resolve_model(ctx.stores, model_ref)
    if len(body.tasks) > ctx.settings.ls_max_tasks:
        raise ApiError(413, f"{len(body.tasks)} tasks in one request; at most {ctx.settings.ls_max_tasks} "
                            "(SEGPIPE_LS_MAX_TASKS)")
    control = (choose_control(body.label_config, model.task, model.class_names, model.label)
               if body.label_config and body.label_config.strip() else _default_control(model))
    context = interactive_context({"params": body.params, "context": body.context})
    if context is not None:  # the annotator drew a box with the smart tool: answer its object's mask
        prompt = parse_box_prompt(context)
        if len(body.tasks) != 1:
            raise ApiError(422, f"an interactive request carries one task, this one {len(body.tasks)}",
                           detail={"field": "tasks"})
        check_prompt(model, control, prompt)
        _task_id, image = _task_image(body.tasks[0], 0, control, ctx)
        answer = box_result(ctx, model, control, prompt, image, submitted_by=f"label-studio ({who.name})")
        return {"results": [answer], "model_version": model.label}
    images = [_task_image(task, i, control, ctx) for i, task in enumerate(body.tasks)]
    found: dict[int, Found] = {}
    missing: list[tuple[int, TaskImage]] = []
    for i, (_task_id, image) in enumerate(images):
        stored = find_stored(ctx, model, image, (body.tasks[i].get("data") or {}).get("segpipe_image_id"))
        if stored is not None:
            found[i] = stored
        else:
            missing.append((i, image))
    if missing:
        trouble = interactive_trouble(ctx, model)
        if trouble is not None and trouble.stuck:  # a new job would only wait behind the stuck one
            raise ApiError(503, trouble.reason, headers={"Retry-After": "10"})
        unique = {content_key(image): image for _i, image in missing}
        computed = predict_now(ctx, model, list(unique.values()), submitted_by=f"label-studio ({who.name})")
        for i, image in missing:
            found[i] = computed[content_key(image)]
    return {"results": [_result(found[i], model, control) for i in range(len(images))], "model_version": model.label}


@router.post("/webhook")
def webhook(
    model_ref: str, body: WebhookIn, ctx: ApiContext = Depends(context), who: Principal = Depends(ls_caller)
) -> dict[str, Any]:
    """An annotation changed in the project (or "Start training" was pressed, which Label Studio sends as
    a START_TRAINING webhook): signal the model's dataset (debounced) for a retraining check."""
    model = resolve_model(ctx.stores, model_ref)
    if body.action not in ANNOTATION_ACTIONS:
        return {"status": "ignored", "action": body.action,
                "detail": f"only {', '.join(sorted(ANNOTATION_ACTIONS))} signal the dataset"}
    return _signal(ctx, model) | {"action": body.action, "project": (body.project or {}).get("id")}


@router.post("/train")
def train(model_ref: str, ctx: ApiContext = Depends(context), who: Principal = Depends(ls_caller)) -> dict[str, Any]:
    """Label Studio's "Start training" where it still posts to ``/train`` (its older protocol, with the
    annotations in the body, which segpipe does not need: the retraining pulls the project itself)."""
    return _signal(ctx, resolve_model(ctx.stores, model_ref)) | {"action": "START_TRAINING"}


def _signal(ctx: ApiContext, model: ModelInfo) -> dict[str, Any]:
    from segpipe.retrain.trigger import configured_schedule, signal_dataset

    schedule = configured_schedule(ctx.settings)
    entry = schedule.get(model.name)  # 404 naming the scheduled models
    slots = signal_dataset(ctx.stores, schedule, entry.dataset_name)
    debounce: timedelta = schedule.debounce
    return {
        "status": "signalled",
        "dataset": entry.dataset_name,
        "debounce_seconds": debounce.total_seconds(),
        "models": [{"name": s.name, "signalled_at": s.signalled_at.isoformat(),
                    "check_after": (s.signalled_at + debounce).isoformat()} for s in slots if s.signalled_at],
    }
