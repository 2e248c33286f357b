"""The TaskAdapter contract: everything task-specific between a batch and a model.

The engine knows no task. It builds one adapter per job (``segpipe.models.tasks.get_adapter``) and only
calls:

- ``prepare(batch, device) -> batch``: tensors to the device, images uint8 → float (normalised the way
  the model family expects); targets checked against the label count on the CPU first, so a bad label
  fails with a DataError naming the image instead of a device-side assert;
- ``loss(model, batch) -> dict[str, Tensor]``: finite scalar losses to be summed (model in train mode);
- ``predict(model, batch, score_threshold) -> list[Prediction]``: eval mode, no grad, one Prediction per
  image in the batch's own pixel coordinates;
- ``forward_logits(model, batch) -> Tensor``: dense outputs for tiling and inspection (tensor-batch
  tasks only);
- ``default_monitor`` / ``monitor_mode``: the metric that picks the best checkpoint.

The batch format is produced by ``segpipe.data.dataset``; keys used here: ``images``, ``image_ids``,
``meta`` and, per task, ``class_ids``, ``label_maps`` or ``targets``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from segpipe.errors import ConfigError
from segpipe.prediction import Prediction
from segpipe.registry import Registry
from segpipe.task_kinds import TaskTraits, traits
from segpipe.vocabulary import IGNORE_INDEX, SCORE_FLOOR

Batch = dict[str, Any]

# ImageNet statistics, in 0..255 units because images arrive as uint8.
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


class TaskAdapter(ABC):
    """Base class; one subclass per task kind, registered in ``ADAPTERS`` under the task's name.

    num_labels:   model labels as counted by CategoryMap (background included where the task has one).
    in_channels:  channels the model takes (images in a batch always have 3; see `normalise`).
    ignore_index: label-map value that marks pixels not to learn from (dense tasks).
    """

    task: ClassVar[str]
    default_monitor: ClassVar[str]
    monitor_mode: ClassVar[Literal["max", "min"]] = "max"

    def __init__(self, *, num_labels: int, in_channels: int = 3, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_outputs = self.outputs_for(num_labels)
        self.num_labels = num_labels
        self.in_channels = in_channels
        self.ignore_index = ignore_index

    @property
    def traits(self) -> TaskTraits:
        """What the task needs from data, augmentation, evaluation and exports (targets, stacking, default
        prediction formats, COCO IoU types): `segpipe.task_kinds`, readable there without torch."""
        return traits(self.task)

    @classmethod
    @abstractmethod
    def outputs_for(cls, num_labels: int) -> int:
        """Model output size for `num_labels` labels; ConfigError if the task cannot use that many."""

    @abstractmethod
    def prepare(self, batch: Batch, device: torch.device | str) -> Batch:
        """A new batch with tensors on `device` and float images ready for the model."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Named scalar losses for a prepared batch; puts the model in train mode if it is not."""

    @abstractmethod
    def predict(self, model: nn.Module, batch: Batch, score_threshold: float = SCORE_FLOOR) -> list[Prediction]:
        """One Prediction per image of a prepared batch (eval mode, no grad)."""

    def eval_step(self, model: nn.Module, batch: Batch) -> tuple[dict[str, torch.Tensor] | None, list[Prediction]]:
        """Validation on a prepared batch in eval mode: (losses or None where the task has no
        eval-mode loss, predictions). Dense tasks compute both from one forward pass."""
        return None, self.predict(model, batch)

    def eval_targets(self, batch: Batch) -> Any:
        """What this task's evaluator compares predictions with (see segpipe.evaluation)."""
        return None

    def forward_logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Raw dense model outputs for a prepared batch, in the model's current mode."""
        raise NotImplementedError(f"task {self.task!r} has no dense logits (models return instances)")

    @classmethod
    def eval_transform(cls, augment: Any, image_size: int, ignore_index: int = IGNORE_INDEX, predict: Any = None) -> Any:
        """The deterministic transform evaluation and prediction apply to an image (and its targets):
        the task's resize / letterbox to `image_size`. None: images go in as they are. `predict`: the
        config's PredictConfig (segmentation evaluates at native resolution with ``evaluate_tiled``)."""
        from segpipe.data.augment import build_transform

        return build_transform(augment, cls.task, image_size, train=False, ignore_index=ignore_index)

    def configure_inference(self, predict: Any, *, evaluation: bool) -> None:  # noqa: B027 - a hook; most tasks have none
        """Take the inference options of a PredictConfig that apply to `eval_step` (segmentation: tiles
        when ``evaluate_tiled``; test-time augmentation when `evaluation`, not in training's validation)."""

    def predict_images(
        self,
        model: nn.Module,
        images: list[np.ndarray],
        image_ids: list[Any],
        cfg: Any,
        *,
        transform: Any,
        device: torch.device | str,
        autocast: Callable[[], AbstractContextManager[Any]],
    ) -> list[Prediction]:
        """Predictions for H×W×3 uint8 RGB `images`, in their own pixels. `cfg`: the PredictConfig
        (score threshold, tiles, test-time augmentation); `transform`: `eval_transform`'s result;
        `autocast`: the engine's mixed-precision context."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_labels={self.num_labels}, in_channels={self.in_channels}, "
            f"ignore_index={self.ignore_index})"
        )


ADAPTERS: Registry[type[TaskAdapter]] = Registry("task")


# ---------------------------------------------------------------------------------------------- helpers


def need_labels(task: str, num_labels: int, least: int, most: int | None = None) -> None:
    if num_labels < least or (most is not None and num_labels > most):
        span = (
            f"exactly {least}"
            if least == most
            else f"{least}..{most}"
            if most is not None
            else f"at least {least}"
        )
        raise ConfigError(f"task {task!r} needs {span} labels, got num_labels={num_labels}")


def train_mode(model: nn.Module) -> None:
    # Only flip the top-level flag when needed: a caller that froze some submodules in eval mode
    # (e.g. batch norm while fine-tuning) keeps that choice.
    if not model.training:
        model.train()


def require_prepared(batch: Batch) -> None:
    images = batch["images"]
    first = images[0] if isinstance(images, (list, tuple)) and images else images
    if isinstance(first, torch.Tensor) and not first.is_floating_point():
        raise RuntimeError("batch images are still integers: call adapter.prepare(batch, device) first")


def move(x: Any, device: torch.device | str) -> Any:
    """Tensors (also inside lists and dicts) to `device`; anything else unchanged."""
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        return {k: move(v, device) for k, v in x.items()}
    if isinstance(x, list):
        return [move(v, device) for v in x]
    return x


def normalise(images: torch.Tensor, in_channels: int) -> torch.Tensor:
    """uint8 B×C×H×W (C = 3, RGB) → float32 B×in_channels×H×W, ImageNet-normalised.

    in_channels 1: the mean of the RGB channels, normalised with the mean ImageNet statistics.
    in_channels > 3 (or 2): the RGB channels repeated cyclically, statistics likewise.
    """
    x = images.float()
    mean = torch.tensor(IMAGENET_MEAN, device=x.device)
    std = torch.tensor(IMAGENET_STD, device=x.device)
    if in_channels == 1:
        x, mean, std = x.mean(dim=1, keepdim=True), mean.mean().reshape(1), std.mean().reshape(1)
    elif in_channels != x.shape[1]:
        index = torch.arange(in_channels, device=x.device) % x.shape[1]
        x, mean, std = x[:, index], mean[index], std[index]
    return (x - mean[None, :, None, None]) / std[None, :, None, None]


def meta_of(batch: Batch, i: int) -> dict[str, Any]:
    meta = batch.get("meta")
    return dict(meta[i]) if meta else {}


def image_ids_of(batch: Batch) -> list[Any]:
    return list(batch["image_ids"])
