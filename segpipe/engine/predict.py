"""Batched inference over image files; every Prediction comes back in ORIGINAL image pixels.

The task's adapter does the task-specific part (``TaskAdapter.predict_images``):
- classification: resize to the training size, arg-max + softmax scores;
- semantic / binary: letterbox to the training size, logits cropped back and resized to the original
  size before the arg-max — or, with ``predict.tile_size``, sliding windows at native resolution whose
  overlapping logits are averaged (``predict.tile_border: mirror``: the overlap-tile strategy); with
  ``predict.tta`` the logits of the 8 flips/rotations are averaged;
- instance / detection: the original image goes in; torchvision's detectors resize internally and
  answer in input pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segpipe import config as config_mod
from segpipe.config import JobConfig, PredictConfig
from segpipe.data.categories import CategoryMap
from segpipe.data.image_list import ImageItem, image_items  # noqa: F401 - image_items: re-exported for its callers
from segpipe.data.images import read_image
from segpipe.data.sample import ImageId
from segpipe.engine.checkpoint import load_checkpoint
from segpipe.engine.distributed import DistInfo, device_for
from segpipe.engine.train import autocast
from segpipe.errors import ConfigError, DataError
from segpipe.limits import check_text
from segpipe.models import build_model, get_adapter
from segpipe.models.adapter import TaskAdapter
from segpipe.prediction import Prediction
from segpipe.ranking.fingerprints import dhash
from segpipe.run_files import resolve_checkpoint
from segpipe.vocabulary import IGNORE_INDEX


@dataclass
class LoadedModel:
    model: nn.Module
    adapter: TaskAdapter
    config: JobConfig
    category_map: CategoryMap
    device: torch.device
    checkpoint: Path

    @property
    def task(self) -> str:
        return self.config.task

    @cached_property
    def eval_transform(self) -> Any:
        return self.adapter.eval_transform(self.config.augment, self.config.train.image_size)


def load_model(model_ref: str | Path, device: str = "auto") -> LoadedModel:
    """Rebuild a trained model from its checkpoint alone (config and category map travel inside)."""
    path = resolve_checkpoint(model_ref)
    ckpt = load_checkpoint(path)
    if "config" not in ckpt or "category_map" not in ckpt:
        raise ConfigError(f"{path}: checkpoint has no config/category map (not written by segpipe train)")
    config = config_mod.from_dict(config_mod.parse_yaml(ckpt["config"], source=f"{path}:config", aliases=True))
    cmap = CategoryMap.from_dict(ckpt["category_map"])
    for name in cmap.names:  # stored with every prediction: a model trained before the limit existed
        check_text(f"{path}: class", str(name), "class name")
    # the checkpoint holds every weight: do not load the pretrained files named in the config again
    model_cfg = config.model.model_copy(update={"weights": None, "backbone_weights": None})
    model = build_model(model_cfg, config.task, cmap.num_labels)
    load_trained_state(model, ckpt["model"], path)
    dev = device_for(device, DistInfo())  # `auto` picks CUDA when present, as training does
    model.to(dev).eval()
    ignore = config.data.ignore_index if config.data else IGNORE_INDEX
    adapter = get_adapter(config.task, num_labels=cmap.num_labels, in_channels=config.model.in_channels, ignore_index=ignore)
    return LoadedModel(model, adapter, config, cmap, dev, path)


def load_trained_state(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load a checkpoint's own model state. Trained with frozen batch norm, it has no BN step counters
    (the model rebuilt for inference has plain, eval-mode batch norm: same arithmetic); nothing else
    may be missing."""
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ConfigError(f"{source}: checkpoint does not fit its own model config (missing {missing[:5]}, "
                          f"unexpected {result.unexpected_keys[:5]})")


FailedImage = Callable[["ImageItem", str], None]


def predict_items(
    loaded: LoadedModel, items: Sequence[ImageItem], cfg: PredictConfig, on_failed: FailedImage | None = None
) -> Iterator[tuple[ImageItem, np.ndarray, Prediction]]:
    """Yield (item, original RGB image, prediction) per image, in order, batched by ``cfg.batch_size``.
    Image decoding runs one batch ahead in a thread so the model rarely waits for the disk.

    An image that cannot be read or is refused by the admission limits (a `DataError`) is skipped and
    passed to ``on_failed(item, reason)``; without ``on_failed`` the error is raised."""
    batches = [items[i : i + cfg.batch_size] for i in range(0, len(items), cfg.batch_size)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = pool.map(lambda b: [_read_or_reason(it) for it in b], batches)
        for batch_items, read in zip(batches, pending, strict=True):
            ok = []
            for item, image in zip(batch_items, read, strict=True):
                if isinstance(image, DataError):
                    if on_failed is None:
                        raise image
                    on_failed(item, str(image).removeprefix(f"{item.path}: "))
                else:
                    ok.append((item, image))
            if not ok:
                continue
            images = [image for _, image in ok]
            preds = predict_arrays(loaded, images, [it.image_id for it, _ in ok], cfg)
            for (item, image), pred in zip(ok, preds, strict=True):
                # what near-duplicate suppression in "what to label next" compares (segpipe.ranking)
                pred.meta.setdefault("fingerprint", f"{dhash(image):016x}")
                yield item, image, pred


def _read_or_reason(item: ImageItem) -> np.ndarray | DataError:
    try:
        return read_image(item.path)
    except DataError as e:
        return e


def predict_arrays(
    loaded: LoadedModel, images: list[np.ndarray], image_ids: list[ImageId], cfg: PredictConfig
) -> list[Prediction]:
    """Predictions for H×W×3 uint8 RGB images, in their own pixels (the task's adapter decides how)."""
    return loaded.adapter.predict_images(
        loaded.model, images, list(image_ids), cfg, transform=loaded.eval_transform, device=loaded.device,
        autocast=lambda: autocast(loaded.device, loaded.config.train.amp),
    )
