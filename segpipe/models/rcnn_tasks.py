"""Adapters for torchvision's R-CNN family: instance (Mask R-CNN) and detection (Faster R-CNN).

Batch in (see ``segpipe.models.adapter``): ``images`` a list of uint8 3×H×W tensors (sizes may
differ); ``targets`` a list of ``{"boxes": float32 N×4 xyxy pixels, "labels": int64 N in 1..K-1,
"masks": uint8 N×H×W}`` (detection: no masks). The models take float images in 0..1 and normalise and
resize internally (``GeneralizedRCNNTransform``); their outputs come back in input pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import nn

from segpipe.errors import ConfigError, DataError
from segpipe.models.adapter import (
    ADAPTERS,
    Batch,
    TaskAdapter,
    image_ids_of,
    meta_of,
    move,
    need_labels,
    require_prepared,
    train_mode,
)
from segpipe.models.uncertainty import score_entropy
from segpipe.prediction import Instance, Prediction
from segpipe.task_kinds import traits
from segpipe.vocabulary import IGNORE_INDEX, SCORE_FLOOR

_MASK_THRESHOLD = 0.5  # Mask R-CNN mask probabilities → binary masks
# Instances scored below this say nothing about the image's uncertainty (torchvision's own box floor).
UNCERTAINTY_FLOOR = 0.05


def encode_masks(masks: np.ndarray) -> list[dict]:
    """N×H×W bool/uint8 masks → compressed COCO RLEs ``{"size": [h, w], "counts": str}``."""
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")} for r in rles]


class _RcnnAdapter(TaskAdapter):
    with_masks: bool = False

    def __init__(self, *, num_labels: int, in_channels: int = 3, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__(num_labels=num_labels, in_channels=in_channels, ignore_index=ignore_index)
        if in_channels != 3:
            raise ConfigError(
                f"task {self.task!r}: torchvision detection models take 3-channel RGB input; "
                f"in_channels={in_channels} is not supported"
            )

    @classmethod
    def outputs_for(cls, num_labels: int) -> int:
        need_labels(cls.task, num_labels, 2)  # background + at least one category
        return num_labels

    def prepare(self, batch: Batch, device: torch.device | str) -> Batch:
        images = batch["images"]
        if not isinstance(images, (list, tuple)) or not all(
            isinstance(im, torch.Tensor) and im.ndim == 3 and im.shape[0] == 3 for im in images
        ):
            raise DataError(f"task {self.task!r}: batch images must be a list of uint8 3×H×W tensors")
        out = dict(batch)
        out["images"] = [move(im, device).float().div_(255.0) for im in images]
        if "targets" in batch:
            for image_id, image, target in zip(batch["image_ids"], images, batch["targets"], strict=True):
                self._check_target(image_id, image, target)
            keys = ("boxes", "labels", "masks") if self.with_masks else ("boxes", "labels")
            out["targets"] = [{k: move(t[k], device) for k in keys} for t in batch["targets"]]
        return out

    def _check_target(self, image_id: object, image: torch.Tensor, target: dict) -> None:
        boxes, labels = torch.as_tensor(target["boxes"]), torch.as_tensor(target["labels"])
        n = len(labels)
        if boxes.shape != (n, 4):
            raise DataError(f"image {image_id}: {n} labels but boxes of shape {tuple(boxes.shape)}")
        bad = ((labels < 1) | (labels >= self.num_labels)).nonzero().flatten()
        if len(bad):
            raise DataError(
                f"image {image_id}: instance label {int(labels[bad[0]])} is outside 1..{self.num_labels - 1}"
            )
        # torchvision cannot regress a box without area (it raises); name the image instead.
        flat = ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).nonzero().flatten()
        if len(flat):
            raise DataError(f"image {image_id}: box {boxes[flat[0]].tolist()} has no area (xyxy pixels)")
        if self.with_masks:
            if "masks" not in target:
                raise DataError(f"image {image_id}: task 'instance' needs masks in its target")
            got, expected = tuple(target["masks"].shape), (n, *image.shape[-2:])
            if got != expected:
                raise DataError(f"image {image_id}: masks of shape {got}, expected {expected}")

    def loss(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        require_prepared(batch)
        if "targets" not in batch:
            raise DataError(f"task {self.task!r}: batch has no 'targets' to learn from")
        train_mode(model)
        return dict(model(batch["images"], batch["targets"]))

    @classmethod
    def eval_transform(cls, augment: Any, image_size: int, ignore_index: int = IGNORE_INDEX, predict: Any = None) -> Any:
        """None: torchvision detectors resize internally and answer in the input's pixels, so
        predictions land in original coordinates as COCO evaluation needs."""
        return None

    def predict_images(self, model: nn.Module, images: list[np.ndarray], image_ids: list[Any], cfg: Any, *,
                       transform: Any, device: torch.device | str,
                       autocast: Callable[[], AbstractContextManager[Any]]) -> list[Prediction]:
        """The original images go in; the detector resizes them and answers in their pixels. Everything at
        or above ``cfg.score_floor`` is kept (the job stores it; exports apply ``score_threshold``)."""
        batch = {"images": [torch.from_numpy(im).permute(2, 0, 1) for im in images], "image_ids": list(image_ids),
                 "meta": [{} for _ in images]}
        floor = min(getattr(cfg, "score_floor", cfg.score_threshold), cfg.score_threshold)
        with autocast():
            preds = self.predict(model, self.prepare(batch, device), floor)
        for p in preds:
            p.instances = [inst for inst in p.instances if inst.score >= floor]
        return preds

    def predict(self, model: nn.Module, batch: Batch, score_threshold: float = SCORE_FLOOR) -> list[Prediction]:
        require_prepared(batch)
        model.eval()
        with torch.no_grad():
            outputs = model(batch["images"])
        predictions = []
        for i, (image_id, image, out) in enumerate(
            zip(image_ids_of(batch), batch["images"], outputs, strict=True)
        ):
            keep = out["scores"] >= score_threshold
            boxes = out["boxes"][keep].float().cpu().numpy()
            labels = out["labels"][keep].cpu().numpy()
            scores = out["scores"][keep].float().cpu().numpy()
            rles: list[dict | None] = [None] * len(scores)
            if self.with_masks:
                rles = list(encode_masks((out["masks"][keep][:, 0] > _MASK_THRESHOLD).cpu().numpy()))
            instances = [
                Instance(box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])), label=int(lab), score=float(s), rle=r)
                for b, lab, s, r in zip(boxes, labels, scores, rles, strict=True)
            ]
            h, w = image.shape[-2:]
            predictions.append(
                Prediction(
                    image_id=image_id,
                    task=self.task,
                    height=int(h),
                    width=int(w),
                    instances=instances,
                    uncertainty=score_entropy(out["scores"][out["scores"] >= UNCERTAINTY_FLOOR].tolist()),
                    meta=meta_of(batch, i),
                )
            )
        return predictions


@ADAPTERS.register("instance", description="Mask R-CNN losses; instances with box, score, RLE mask")
class InstanceAdapter(_RcnnAdapter):
    task = "instance"
    default_monitor = traits(task).headline_metric
    with_masks = True


@ADAPTERS.register("detection", description="Faster R-CNN losses; instances with box and score")
class DetectionAdapter(_RcnnAdapter):
    task = "detection"
    default_monitor = traits(task).headline_metric
    with_masks = False
