"""Adapters for tasks whose batches are one image tensor: classification, semantic, binary.

Batch in (see ``segpipe.models.adapter``): ``images`` uint8 B×3×H×W; ``class_ids`` int64 (B,) 0..K-1
(classification) or ``label_maps`` int64 B×H×W (semantic 0..K-1, binary 0/1; ``ignore_index`` = skip).
Images are ImageNet-normalised on the device (cnn_small, torchvision classifiers and smp encoders all
expect that).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segpipe.data.augment import letterbox_size
from segpipe.errors import DataError
from segpipe.models import losses
from segpipe.models.adapter import (
    ADAPTERS,
    Batch,
    TaskAdapter,
    image_ids_of,
    meta_of,
    move,
    need_labels,
    normalise,
    require_prepared,
    train_mode,
)
from segpipe.models.dense_inference import dihedral_average, tiled_logits, transformed_batch
from segpipe.models.uncertainty import margin_uncertainty, sigmoid_entropy, softmax_entropy
from segpipe.prediction import Prediction
from segpipe.task_kinds import traits
from segpipe.vocabulary import IGNORE_INDEX, SCORE_FLOOR


def required_multiple(model: nn.Module) -> int:
    """Side length that H and W must be a multiple of (smp's own protocol: models that need it set
    ``requires_divisible_input_shape`` and expose ``encoder.output_stride``); 1 for other models."""
    if getattr(model, "requires_divisible_input_shape", False):
        smp_model: Any = model  # smp's models are untyped
        return int(smp_model.encoder.output_stride)
    return 1


class _TensorBatchAdapter(TaskAdapter):
    target_key: str = ""

    def prepare(self, batch: Batch, device: torch.device | str) -> Batch:
        images = batch["images"]
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise DataError(f"task {self.task!r}: batch images must be a uint8 B×3×H×W tensor, got {got}")
        if self.target_key in batch:
            self.check_targets(batch)  # on the CPU, before the transfer: no device sync, clear errors
        out = dict(batch)
        out["images"] = normalise(move(images, device), self.in_channels)
        if self.target_key in batch:
            out[self.target_key] = move(batch[self.target_key], device)
        return out

    def check_targets(self, batch: Batch) -> None:
        """Raise DataError naming the image whose target does not fit the labels."""

    def forward_logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        require_prepared(batch)
        return model(batch["images"])

    def loss(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        require_prepared(batch)
        if self.target_key not in batch:
            raise DataError(f"task {self.task!r}: batch has no {self.target_key!r} to learn from")
        train_mode(model)
        return self.loss_from_logits(self.forward_logits(model, batch), batch[self.target_key])

    def predict(self, model: nn.Module, batch: Batch, score_threshold: float = SCORE_FLOOR) -> list[Prediction]:
        """Eval mode, no grad; `score_threshold` does not apply to these tasks (arg-max / 0.5 rule)."""
        model.eval()
        with torch.no_grad():
            return self.decode(self.forward_logits(model, batch), batch)

    def eval_step(self, model: nn.Module, batch: Batch) -> tuple[dict[str, torch.Tensor] | None, list[Prediction]]:
        model.eval()
        with torch.no_grad():
            logits = self.forward_logits(model, batch)
            losses = self.loss_from_logits(logits, batch[self.target_key]) if self.target_key in batch else None
            return losses, self.decode(logits, batch)

    def eval_targets(self, batch: Batch) -> Any:
        return batch.get(self.target_key)

    def loss_from_logits(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named losses of `forward_logits` output against the batch's targets (on the same device)."""
        raise NotImplementedError

    def decode(self, logits: torch.Tensor, batch: Batch) -> list[Prediction]:
        """Predictions from `forward_logits` output (also from logits stitched together from tiles)."""
        raise NotImplementedError


@ADAPTERS.register("classification", description="cross-entropy on class_ids; class + softmax scores")
class ClassificationAdapter(_TensorBatchAdapter):
    task = "classification"
    default_monitor = traits(task).headline_metric
    target_key = "class_ids"

    @classmethod
    def outputs_for(cls, num_labels: int) -> int:
        need_labels(cls.task, num_labels, 2)
        return num_labels

    def check_targets(self, batch: Batch) -> None:
        ids = torch.as_tensor(batch["class_ids"])
        bad = ((ids < 0) | (ids >= self.num_outputs)).nonzero().flatten().tolist()
        if bad:
            i = bad[0]
            raise DataError(
                f"image {batch['image_ids'][i]}: class_id {int(ids[i])} is outside 0..{self.num_outputs - 1}"
            )

    def loss_from_logits(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss_ce": F.cross_entropy(logits.float(), target)}

    def predict_images(self, model: nn.Module, images: list[np.ndarray], image_ids: list[Any], cfg: Any, *,
                       transform: Any, device: torch.device | str,
                       autocast: Callable[[], AbstractContextManager[Any]]) -> list[Prediction]:
        """Resized to the training size, arg-max + softmax scores; the prediction keeps the image's size."""
        preds = self.predict(model, self.prepare(transformed_batch(transform, images, image_ids), device))
        for p, im in zip(preds, images, strict=True):
            p.height, p.width = im.shape[:2]
        return preds

    def decode(self, logits: torch.Tensor, batch: Batch) -> list[Prediction]:
        probs_t = logits.float().softmax(dim=1)
        doubts = margin_uncertainty(probs_t).tolist()
        probs = probs_t.cpu().numpy().astype(np.float32)
        h, w = batch["images"].shape[-2:]
        return [
            Prediction(
                image_id=image_id,
                task=self.task,
                height=int(h),
                width=int(w),
                class_id=int(p.argmax()),
                scores=p,
                uncertainty=float(doubt),
                meta=meta_of(batch, i),
            )
            for i, (image_id, p, doubt) in enumerate(zip(image_ids_of(batch), probs, doubts, strict=True))
        ]


class _SegmentationAdapter(_TensorBatchAdapter):
    """Semantic and binary segmentation. ``tta``: evaluation averages the 8 flips/rotations of each
    batch (prediction reads ``predict.tta`` itself)."""

    target_key = "label_maps"
    tta: bool = False
    tiling: Any = None  # a PredictConfig with evaluate_tiled and tile_size: evaluation at native resolution

    @classmethod
    def eval_transform(cls, augment: Any, image_size: int, ignore_index: int = IGNORE_INDEX, predict: Any = None) -> Any:
        if predict is not None and predict.evaluate_tiled and predict.tile_size:
            return None  # native resolution: eval_step slides windows over each image
        return super().eval_transform(augment, image_size, ignore_index)

    def configure_inference(self, predict: Any, *, evaluation: bool) -> None:
        self.tiling = predict if predict.evaluate_tiled and predict.tile_size else None
        self.tta = bool(predict.tta and evaluation)

    def eval_step(self, model: nn.Module, batch: Batch) -> tuple[dict[str, torch.Tensor] | None, list[Prediction]]:
        if not (self.tta or self.tiling):
            return super().eval_step(model, batch)
        model.eval()

        def forward(x: torch.Tensor) -> torch.Tensor:
            return self.forward_logits(model, {"images": x}).float()

        look = (lambda x: dihedral_average(forward, x)) if self.tta else forward
        with torch.no_grad():
            if self.tiling is not None:
                t = self.tiling
                logits = torch.cat([tiled_logits(look, image, t.tile_size, t.tile_overlap, t.batch_size, t.tile_border)
                                    for image in batch["images"]])
            else:
                logits = look(batch["images"])
            losses = self.loss_from_logits(logits, batch[self.target_key]) if self.target_key in batch else None
            return losses, self.decode(logits, batch)

    def predict_images(self, model: nn.Module, images: list[np.ndarray], image_ids: list[Any], cfg: Any, *,
                       transform: Any, device: torch.device | str,
                       autocast: Callable[[], AbstractContextManager[Any]]) -> list[Prediction]:
        """Letterboxed to the training size, logits cropped back and resized to the original size before
        the decision — or sliding windows at native resolution (``cfg.tile_size``, ``cfg.tile_border``);
        either way averaged over the 8 flips/rotations with ``cfg.tta``."""
        model.eval()

        @torch.no_grad()
        def forward(x: torch.Tensor) -> torch.Tensor:
            with autocast():
                return self.forward_logits(model, self.prepare({"images": x}, device)).float()

        look = (lambda x: dihedral_average(forward, x)) if getattr(cfg, "tta", False) else forward
        if cfg.tile_size:
            border = getattr(cfg, "tile_border", "zero")
            return [
                self.decode(tiled_logits(look, im, cfg.tile_size, cfg.tile_overlap, cfg.batch_size, border),
                            {"image_ids": [iid], "meta": [{}]})[0]
                for im, iid in zip(images, image_ids, strict=True)
            ]
        logits = look(transformed_batch(transform, images, image_ids)["images"])
        size = logits.shape[-1]  # letterboxed squares
        preds = []
        for i, (im, iid) in enumerate(zip(images, image_ids, strict=True)):
            h, w = im.shape[:2]
            hh, ww = letterbox_size(h, w, size)
            region = F.interpolate(logits[i : i + 1, :, :hh, :ww], size=(h, w), mode="bilinear", align_corners=False)
            preds.extend(self.decode(region, {"image_ids": [iid], "meta": [{}]}))
        return preds

    def forward_logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """B×C×H×W logits. Images are zero-padded (zero = the mean colour after normalisation) at the
        bottom/right to the size the model needs, and the logits cropped back to H×W."""
        require_prepared(batch)
        images = batch["images"]
        h, w = images.shape[-2:]
        m = required_multiple(model)
        pad_h, pad_w = -h % m, -w % m
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h))
        return model(images)[..., :h, :w]

    def check_targets(self, batch: Batch) -> None:
        maps = torch.as_tensor(batch["label_maps"])
        ok = (maps == self.ignore_index) | ((maps >= 0) & (maps < self.num_labels))
        if not bool(ok.all()):
            i = int((~ok).flatten(1).any(dim=1).nonzero()[0])
            value = int(maps[i][~ok[i]][0])
            raise DataError(
                f"image {batch['image_ids'][i]}: label map has value {value}; task {self.task!r} takes "
                f"0..{self.num_labels - 1} and {self.ignore_index} (ignore)"
            )

    def _label_maps(self, labels: torch.Tensor, doubts: torch.Tensor, batch: Batch) -> list[Prediction]:
        """Predictions from ``(B, H, W)`` labels and ``(B,)`` uncertainties."""
        maps = labels.to(torch.uint8).cpu().numpy()
        h, w = maps.shape[-2:]
        return [
            Prediction(
                image_id=image_id,
                task=self.task,
                height=int(h),
                width=int(w),
                label_map=m,
                uncertainty=float(doubt),
                meta=meta_of(batch, i),
            )
            for i, (image_id, m, doubt) in enumerate(zip(image_ids_of(batch), maps, doubts.tolist(), strict=True))
        ]


@ADAPTERS.register("semantic", description="cross-entropy + Dice over K labels; arg-max label map")
class SemanticAdapter(_SegmentationAdapter):
    task = "semantic"
    default_monitor = traits(task).headline_metric

    @classmethod
    def outputs_for(cls, num_labels: int) -> int:
        need_labels(cls.task, num_labels, 2, IGNORE_INDEX)  # a uint8 label map holds 0..254 beside ignore 255
        return num_labels

    def loss_from_logits(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "loss_ce": losses.masked_cross_entropy(logits, target, self.ignore_index),
            "loss_dice": losses.multiclass_dice(logits, target, self.ignore_index),
        }

    def decode(self, logits: torch.Tensor, batch: Batch) -> list[Prediction]:
        return self._label_maps(logits.argmax(dim=1), softmax_entropy(logits), batch)


@ADAPTERS.register("binary", description="BCE + Dice on one sigmoid channel; 0/1 label map")
class BinaryAdapter(_SegmentationAdapter):
    task = "binary"
    default_monitor = traits(task).headline_metric

    @classmethod
    def outputs_for(cls, num_labels: int) -> int:
        need_labels(cls.task, num_labels, 2, 2)  # background + foreground, as CategoryMap counts them
        return 1  # …but one logit: sigmoid > 0.5 is foreground

    def loss_from_logits(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = logits[:, 0]
        return {
            "loss_bce": losses.masked_bce(logits, target, self.ignore_index),
            "loss_dice": losses.binary_dice(logits, target, self.ignore_index),
        }

    def decode(self, logits: torch.Tensor, batch: Batch) -> list[Prediction]:
        # logit > 0 ⇔ probability > 0.5
        return self._label_maps(logits[:, 0] > 0, sigmoid_entropy(logits[:, 0]), batch)
