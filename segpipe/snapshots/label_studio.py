"""A Label Studio project's annotations (its JSON export: tasks with their annotations) as a snapshot draft.

Rules, in the order they apply:
- a task with no annotation, or whose chosen annotation was cancelled ("skipped" in the labeling
  stream), is left out: nobody said what is on that image;
- one annotation per task: a ground-truth one first, else the most recently updated (then created,
  then highest id) — what a reviewer would take;
- regions: ``brushlabels`` (Label Studio's brush RLE) and ``polygonlabels`` become masks,
  ``rectanglelabels`` boxes, ``choices`` an image-level label (a box over the whole image); other
  result types (text areas, ratings) carry no geometry and are passed over, and so are the boxes
  drawn with segpipe's smart box-prompt tool (``from_name`` `BOX_PROMPT`): they asked for a mask;
- label names map to the model's categories by name; a label the model does not know is refused,
  naming the task, the annotation and both lists.

Coordinates in Label Studio results are percentages of ``original_width`` / ``original_height``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from segpipe.errors import DataError
from segpipe.masks.formats.label_studio import BOX_PROMPT, brush_rle_to_mask
from segpipe.snapshots.archive import image_size
from segpipe.snapshots.draft import Draft, DraftAnnotation, DraftImage

# (file name for the snapshot, image bytes) for a task
ImageLoader = Callable[[dict[str, Any]], tuple[str, bytes]]
LABEL_KEYS = {"brushlabels": "brushlabels", "polygonlabels": "polygonlabels", "rectanglelabels": "rectanglelabels",
              "choices": "choices"}


def choose_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The annotation a snapshot takes from a task (see the module rules), or None."""
    annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict)]
    if not annotations:
        return None
    chosen = max(annotations, key=lambda a: (bool(a.get("ground_truth")), str(a.get("updated_at") or ""),
                                               str(a.get("created_at") or ""), _int(a.get("id"))))
    return None if chosen.get("was_cancelled") else chosen


def draft_from_export(tasks: Sequence[dict[str, Any]], categories: Sequence[str], load_image: ImageLoader,
                      category_ids: Sequence[int] | None = None) -> Draft:
    """A draft of every annotated task; ``categories`` are the model's class names (no background),
    ``category_ids`` its COCO ids for them (None: 1..N)."""
    draft = Draft(categories=list(categories), category_ids=None if category_ids is None else list(category_ids))
    for task in tasks:
        annotation = choose_annotation(task)
        if annotation is None:
            continue
        file_name, data = load_image(task)
        where = f"task {task.get('id')} annotation {annotation.get('id')}"
        width, height = image_size(data, f"{where}: image {file_name}")
        draft.images[file_name] = DraftImage(file_name, data, width, height)
        for region in annotation.get("result") or []:
            _add_region(draft, file_name, region, width, height, where)
    return draft


def _add_region(draft: Draft, file_name: str, region: dict[str, Any], width: int, height: int, where: str) -> None:
    kind = region.get("type")
    if kind not in LABEL_KEYS or region.get("from_name") == BOX_PROMPT:
        return
    value = region.get("value") or {}
    labels = value.get(LABEL_KEYS[kind]) or []
    where = f"{where} region {region.get('id')!r}"
    if not labels:
        raise DataError(f"{where}: a {kind} region without a label")
    unknown = [name for name in labels if name not in draft.categories]
    if unknown:
        raise DataError(f"{where}: label {unknown[0]!r} is not one of the model's classes {draft.categories}; "
                        "rename it in the project or train a model with that class")
    w = float(region.get("original_width") or width)
    h = float(region.get("original_height") or height)
    if (round(w), round(h)) != (width, height):
        raise DataError(f"{where}: drawn on a {w:g}×{h:g} image, the task's image is {width}×{height}")
    for label in labels:
        if kind == "brushlabels":
            try:
                mask = brush_rle_to_mask(value.get("rle") or [], height, width).astype(bool)
            except (ValueError, IndexError) as e:
                raise DataError(f"{where}: brush RLE does not decode ({e})") from None
            draft.add_mask(file_name, label, mask)
        elif kind == "polygonlabels":
            flat = [c for x, y in value.get("points") or [] for c in (float(x) * w / 100, float(y) * h / 100)]
            draft.add_polygon(file_name, label, flat, height, width, where)
        elif kind == "rectanglelabels":
            if float(value.get("rotation") or 0) != 0:
                raise DataError(f"{where}: a rotated rectangle ({value.get('rotation')}°) has no COCO box")
            box = [float(value.get(k, 0)) * s / 100 for k, s in (("x", w), ("y", h), ("width", w), ("height", h))]
            draft.annotations.append(DraftAnnotation(file_name, label, box))
        else:  # choices: the label of the whole image
            draft.annotations.append(DraftAnnotation(file_name, label, [0.0, 0.0, float(width), float(height)]))


def _int(value: Any) -> int:
    return value if isinstance(value, int) else -1
