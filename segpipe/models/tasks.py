"""Task adapters: the one front door. ``get_adapter(task, num_labels=...)`` gives the engine the object
that turns batches into losses and predictions for that task kind (contract in
``segpipe.models.adapter``).

==============  ================================  ===========================  ==============
task            loss                              prediction                   default monitor
==============  ================================  ===========================  ==============
classification  cross-entropy                     class_id + softmax scores    accuracy
semantic        CE (ignore 255) + Dice            uint8 label map (arg-max)    miou
binary          BCE on one logit + Dice           uint8 0/1 label map          iou
instance        torchvision Mask R-CNN losses     instances with RLE masks     segm_AP
detection       torchvision Faster R-CNN losses   instances with boxes         bbox_AP
==============  ================================  ===========================  ==============
"""

from __future__ import annotations

from segpipe.models.adapter import ADAPTERS, Batch, TaskAdapter
from segpipe.models.dense_tasks import BinaryAdapter, ClassificationAdapter, SemanticAdapter
from segpipe.models.rcnn_tasks import DetectionAdapter, InstanceAdapter
from segpipe.task_kinds import TASK_KINDS
from segpipe.vocabulary import IGNORE_INDEX

__all__ = [
    "ADAPTERS",
    "Batch",
    "BinaryAdapter",
    "ClassificationAdapter",
    "DetectionAdapter",
    "InstanceAdapter",
    "SemanticAdapter",
    "TaskAdapter",
    "adapter_class",
    "get_adapter",
]

# Every task kind of the config has exactly one adapter.
assert sorted(ADAPTERS.names()) == sorted(TASK_KINDS), "an adapter is missing for a task kind"


def adapter_class(task: str) -> type[TaskAdapter]:
    """The adapter class for a task kind; ConfigError listing the kinds for an unknown one."""
    return ADAPTERS.get(task)


def get_adapter(task: str, *, num_labels: int, in_channels: int = 3, ignore_index: int = IGNORE_INDEX) -> TaskAdapter:
    """A ready adapter for one job.

    num_labels:   CategoryMap.num_labels (background included for semantic/binary/instance/detection).
    in_channels:  the model's input channels (``model.in_channels`` in the config).
    ignore_index: label-map value to skip in dense losses (``data.ignore_index``).
    """
    return adapter_class(task)(num_labels=num_labels, in_channels=in_channels, ignore_index=ignore_index)
