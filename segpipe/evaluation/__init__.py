"""Evaluators: ``reset()`` / ``process(predictions, targets)`` / ``result() -> dict``.

One per task kind, all fed per batch by the engine. ``result()`` values are floats, ints or lists
(never NaN) so they go straight into JSON; ``primary_metric`` names the key to monitor by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from pycocotools.coco import COCO

from segpipe.data.categories import CategoryMap
from segpipe.evaluation.classify import ClassificationEvaluator
from segpipe.evaluation.coco import CocoEvaluator
from segpipe.evaluation.semantic import BinaryEvaluator, SemanticEvaluator, confusion_matrix
from segpipe.prediction import Prediction
from segpipe.task_kinds import TASK_KINDS, TRAITS
from segpipe.vocabulary import IGNORE_INDEX


class Evaluator(Protocol):
    primary_metric: str

    def reset(self) -> None: ...

    def process(self, predictions: Sequence[Prediction], targets: Any) -> None: ...

    def result(self) -> dict[str, Any]: ...


def make_evaluator(
    task: str,
    category_map: CategoryMap,
    *,
    coco_gt: COCO | str | Path | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> Evaluator:
    """The evaluator for a task kind. ``coco_gt`` (a COCO object or annotation file, original image
    sizes) is required for ``instance`` (box and mask AP) and ``detection`` (box AP)."""
    kind = TRAITS.get(task)
    if kind is None:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(sorted(TASK_KINDS))}")
    if kind.target == "class_id":
        return ClassificationEvaluator(category_map)
    if kind.dense:
        evaluator = BinaryEvaluator if kind.single_foreground else SemanticEvaluator
        return evaluator(category_map, ignore_index=ignore_index)
    if coco_gt is None:
        raise ValueError(f"task {task!r} is evaluated against COCO annotations; pass coco_gt")
    return CocoEvaluator(coco_gt, category_map, kind.coco_iou_types)


__all__ = [
    "BinaryEvaluator",
    "ClassificationEvaluator",
    "CocoEvaluator",
    "Evaluator",
    "SemanticEvaluator",
    "confusion_matrix",
    "make_evaluator",
]
