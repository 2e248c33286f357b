"""Label Studio's interactive request answered with the mask of the object inside the drawn box.

The prompt (`box_context`) and the task's image are checked here, so what a worker gets is a box that
covers part of an admitted image of an instance model. The image goes into the inbox like an
interactive prediction's (`predictions.write_inbox`), ONE ``box-mask`` job (`segpipe.jobs.box_mask`) is
queued on the ``interactive`` queue, and the request waits for it up to ``SEGPIPE_LS_PREDICT_TIMEOUT``.
Its row becomes the region through the export layer's converter (`segpipe.masks.formats.label_studio`):
a ``brushlabels`` region (Label Studio's brush RLE), or polygons when the project labels with
PolygonLabels. The label is the rectangle's when the model has that class, else the class the model
finds most likely in the box; a box where the mask head finds nothing is answered with no region.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from segpipe import service
from segpipe.api.deps import ApiContext
from segpipe.api.errors import ApiError
from segpipe.api.labelstudio.box_context import BoxPrompt
from segpipe.api.labelstudio.label_config import Control
from segpipe.api.labelstudio.model_info import ModelInfo
from segpipe.api.labelstudio.predictions import (
    content_key,
    interactive_trouble,
    public_reason,
    write_inbox,
)
from segpipe.api.labelstudio.task_images import TaskImage
from segpipe.data.admission import ImageLimits, admit_bytes
from segpipe.jobs.specs import BoxMaskSpec
from segpipe.masks.formats.label_studio import regions
from segpipe.masks.rows import PredictionRow
from segpipe.settings import Settings
from segpipe.stores.models import TERMINAL_STATES

POLL_SECONDS = 0.01  # an annotator waits on this one: the job row is read every 10 ms
RESULT = "box_mask.json"  # `segpipe.jobs.box_mask.RESULT` (the API does not import the worker side)


def check_prompt(model: ModelInfo, control: Control, prompt: BoxPrompt) -> None:
    """422 unless ``model`` is an instance model and ``control`` paints masks on the image the box was
    drawn on (checked before the task's image is fetched)."""
    if model.task != "instance":
        raise ApiError(422, f"box-to-mask needs an instance-segmentation model (Mask R-CNN); {model.label} is a "
                            f"{model.task} model", detail={"model": model.label, "task": model.task})
    if control.kind not in ("brush", "polygon"):
        raise ApiError(422, "box-to-mask answers a mask: the labeling config needs a BrushLabels (or PolygonLabels) "
                            f"control on the image; segpipe would fill <{control.tag or control.kind}>")
    if prompt.to_name is not None and prompt.to_name != control.to_name:
        raise ApiError(422, f"interactive request: the rectangle was drawn on {prompt.to_name!r}, but the "
                            f"<{control.tag or 'BrushLabels'} name=\"{control.from_name}\"> labels {control.to_name!r}",
                       detail={"field": "context.result.to_name"})


def _check_covers(prompt: BoxPrompt, image: TaskImage, settings: Settings) -> None:
    """422 unless the box covers at least one whole pixel of the image (its size read from the header)."""
    size = admit_bytes(image.content, f"task {image.task_id}: image {image.source!r}", ImageLimits.of(settings))
    x, y, w, h = prompt.box
    left, right = max(0.0, x) * size.width / 100, min(100.0, x + w) * size.width / 100
    top, bottom = max(0.0, y) * size.height / 100, min(100.0, y + h) * size.height / 100
    if right - left < 1 or bottom - top < 1:
        raise ApiError(422, f"interactive request: the box x={x:g}, y={y:g}, width={w:g}, height={h:g} (percent) "
                            f"covers no whole pixel of the {size.width}×{size.height} image of task {image.task_id}",
                       detail={"field": "context.result.value"})


def box_result(ctx: ApiContext, model: ModelInfo, control: Control, prompt: BoxPrompt, image: TaskImage,
               submitted_by: str) -> dict[str, Any]:
    """One Label Studio prediction (``result``, ``score``, ``model_version``) for the drawn box."""
    check_prompt(model, control, prompt)
    _check_covers(prompt, image, ctx.settings)
    trouble = interactive_trouble(ctx, model)
    if trouble is not None and trouble.stuck:  # a new job would only wait behind the stuck one
        raise ApiError(503, trouble.reason, headers={"Retry-After": "10"})
    key = content_key(image)
    folder = write_inbox(ctx, [(key, image)])
    label = prompt.label if prompt.label in model.class_names else None
    spec = BoxMaskSpec(model=model.label, image=folder / f"{key}{image.suffix}", box=prompt.box, label=label)
    job = service.enqueue(ctx.stores, ctx.celery, "box-mask", spec, submitted_by=submitted_by, model_name=model.name)
    ctx.stores.jobs.record_model(job.id, model.name, model.version)  # found by `interactive_trouble` if unserved
    found = _wait(ctx, job.id, folder)
    row = found["row"]
    height, width = int(found["height"]), int(found["width"])
    answer: dict[str, Any] = {"result": [], "score": 0.0, "model_version": model.label,
                              "segpipe": {"job_id": job.id, "label_from": "rectangle" if found["label_given"] else "model"}}
    if row is None:
        return answer
    stored = PredictionRow(job.id, key, 0, row["category_id"], row["category_name"], row["score"], row["bbox"],
                           row["rle"], height, width)
    result = regions([stored], height, width, model.task, "polygons" if control.kind == "polygon" else "rle")
    for i, region in enumerate(result):
        # one id per answer: two boxes drawn on one task give two regions, not one id twice
        region |= {"id": f"segpipe-{job.id[:12]}-{i}", "from_name": control.from_name, "to_name": control.to_name}
    answer |= {"result": result, "score": float(row["score"] or 0.0)}
    return answer


def _wait(ctx: ApiContext, job_id: str, folder: Path) -> dict[str, Any]:
    timeout = ctx.settings.ls_predict_timeout
    deadline = time.monotonic() + timeout
    while True:
        state = ctx.stores.jobs.get(job_id)
        if state.state in TERMINAL_STATES:
            break
        if time.monotonic() > deadline:
            raise ApiError(503, f"the mask for the drawn box is not ready within the {timeout:g} s timeout "
                                f"(SEGPIPE_LS_PREDICT_TIMEOUT); box-mask job {job_id} is still {state.state} on the "
                                "'interactive' queue: is a `segpipe worker` serving it?",
                           detail={"job_id": job_id, "timeout_seconds": timeout}, headers={"Retry-After": "10"})
        time.sleep(POLL_SECONDS)
    if state.state != "succeeded":
        reason = public_reason(state.error or "no reason recorded", folder, ctx)
        raise ApiError(503, f"box-mask job {job_id} {state.state}: {reason}", detail={"job_id": job_id})
    relative = (state.artifacts or {}).get(RESULT)
    if not relative:
        raise ApiError(503, f"box-mask job {job_id} succeeded without its {RESULT}", detail={"job_id": job_id})
    return json.loads(ctx.stores.artifacts.fetch(job_id, relative).read_text())
