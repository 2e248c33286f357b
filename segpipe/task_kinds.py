"""Task kinds and what each one needs: the one place a task's name decides anything.

The task adapters (`segpipe.models.tasks`) carry these traits as ``adapter.traits``; code below the
models layer (data, masks, evaluation, model export) and the API read them here, so asking "does this
task stack its images?" never imports torch. A new task kind is a new `TaskTraits` entry and its adapter.

==============  ==========  ======  ==========  =====  ===========================  =======================
task            target      stacks  background  boxes  COCO IoU types               default formats
==============  ==========  ======  ==========  =====  ===========================  =======================
classification  class_id    yes     no          no     –                            coco-results, csv
semantic        label_map   yes     yes         no     –                            coco-results, coco, png
binary          label_map   yes     yes         no     –                            coco-results, coco, png
instance        instances   no      yes         yes    bbox, segm                   coco-results, coco, png
detection       instances   no      yes         yes    bbox                         coco-results, coco
==============  ==========  ======  ==========  =====  ===========================  =======================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from segpipe.errors import ConfigError

TaskKind = Literal["classification", "semantic", "binary", "instance", "detection"]
TASK_KINDS: tuple[str, ...] = get_args(TaskKind)
Target = Literal["class_id", "label_map", "instances"]
_COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]


@dataclass(frozen=True)
class TaskTraits:
    """What one task kind needs from data, augmentation, evaluation and exports.

    target:            what a Sample carries for it (``class_id``, ``label_map``, or boxes/labels/masks);
    stacks:            its images (and label maps) stack into one tensor (fixed S×S after the transforms);
    background:        label 0 is background (CategoryMap offset 1); classification has none;
    single_foreground: one foreground category (binary): every chosen category id maps to label 1;
    instance_masks:    instances carry masks (boxes only without);
    coco_iou_types:    what COCO AP is computed on (empty: not a COCO-evaluated task);
    default_formats:   prediction formats a predict job writes when its config names none;
    metrics:           the scalar metrics its evaluation reports (what a gate or a monitor may compare;
                       ``tests/evaluation/test_metric_names.py`` checks them against the evaluators);
    metric_patterns:   metrics reported only under some settings, as regular expressions;
    headline_metric:   the one metric shown first in listings and monitored by default (best checkpoint).
    """

    name: str
    target: Target
    stacks: bool
    background: bool = True
    single_foreground: bool = False
    instance_masks: bool = False
    coco_iou_types: tuple[str, ...] = ()
    default_formats: tuple[str, ...] = ("coco-results", "coco", "png")
    metrics: tuple[str, ...] = ()
    metric_patterns: tuple[str, ...] = ()
    headline_metric: str = ""

    @property
    def dense(self) -> bool:
        """Predicts a label map (semantic, binary)."""
        return self.target == "label_map"

    @property
    def instances(self) -> bool:
        """Predicts instances with boxes, labels and scores (instance, detection)."""
        return self.target == "instances"

    @property
    def needs_masks(self) -> bool:
        """Its targets are masks (label maps or instance masks), not boxes or a class alone."""
        return self.dense or self.instance_masks

    @property
    def label_offset(self) -> int:
        """CategoryMap offset: 1 where label 0 is background, else 0."""
        return 1 if self.background else 0


TRAITS: dict[str, TaskTraits] = {
    t.name: t
    for t in (
        TaskTraits("classification", "class_id", stacks=True, background=False,
                   default_formats=("coco-results", "csv"),
                   metrics=("accuracy", "macro_f1", "val_loss", "val_loss_ce"),
                   metric_patterns=(r"top\d+_accuracy",), headline_metric="accuracy"),  # top-k accuracy needs at least k classes
        TaskTraits("semantic", "label_map", stacks=True,
                   metrics=("miou", "mdice", "pixel_accuracy", "val_loss", "val_loss_ce", "val_loss_dice"),
                   headline_metric="miou"),
        TaskTraits("binary", "label_map", stacks=True, single_foreground=True,
                   metrics=("iou", "dice", "pixel_error", "miou", "mdice", "pixel_accuracy", "val_loss",
                            "val_loss_bce", "val_loss_dice"), headline_metric="iou"),
        TaskTraits("instance", "instances", stacks=False, instance_masks=True, coco_iou_types=("bbox", "segm"),
                   metrics=tuple(f"{kind}_{stat}" for kind in ("segm", "bbox") for stat in _COCO_STATS),
                   headline_metric="segm_AP"),
        TaskTraits("detection", "instances", stacks=False, coco_iou_types=("bbox",),
                   default_formats=("coco-results", "coco"), metrics=tuple(f"bbox_{stat}" for stat in _COCO_STATS),
                   headline_metric="bbox_AP"),
    )
}
assert tuple(TRAITS) == TASK_KINDS, "every task kind has its traits"

# The tasks of each target, in TASK_KINDS order (for messages and tags).
CLASS_TASKS: tuple[str, ...] = tuple(t.name for t in TRAITS.values() if t.target == "class_id")
DENSE_TASKS: tuple[str, ...] = tuple(t.name for t in TRAITS.values() if t.dense)
INSTANCE_TASKS: tuple[str, ...] = tuple(t.name for t in TRAITS.values() if t.instances)
STACKING_TASKS: tuple[str, ...] = tuple(t.name for t in TRAITS.values() if t.stacks)


def traits(task: str) -> TaskTraits:
    """The traits of a task kind; ConfigError listing the kinds for an unknown one."""
    try:
        return TRAITS[task]
    except KeyError:
        raise ConfigError(f"unknown task {task!r}; known: {', '.join(TASK_KINDS)}") from None
