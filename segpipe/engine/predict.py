"""Batched inference over image files; every Prediction comes back in ORIGINAL image pixels.

Per task (the adapter does the model-specific part):
- classification: resize to the training size, arg-max + softmax scores;
- semantic / binary: letterbox to the training size, logits cropped back and resized to the original
  size before the arg-max — or, with ``predict.tile_size``, sliding windows at native resolution whose
  overlapping logits are averaged (for images larger than what the model trained on);
- instance / detection: the original image goes in; torchvision's detectors resize internally and
  answer in input pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segpipe import config as config_mod
from segpipe.config import JobConfig, PredictConfig
from segpipe.data.augment import build_transform, letterbox_size
from segpipe.data.categories import CategoryMap
from segpipe.data.images import read_image
from segpipe.data.sample import ImageId, Sample
from segpipe.engine.checkpoint import BEST, LAST, load_checkpoint
from segpipe.engine.distributed import DistInfo, device_for
from segpipe.engine.train import autocast
from segpipe.errors import ConfigError
from segpipe.models import build_model, get_adapter
from segpipe.models.adapter import TaskAdapter
from segpipe.prediction import Prediction


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
        cfg = self.config
        return build_transform(cfg.augment, cfg.task, cfg.train.image_size, train=False)


@dataclass(frozen=True)
class ImageItem:
    """One image to predict: where it is, the id to report, and the name its output files get."""

    path: Path
    image_id: ImageId
    name: str


def resolve_checkpoint(model_ref: str | Path) -> Path:
    """A run directory (its best.pt, else last.pt) or a checkpoint file."""
    ref = Path(model_ref)
    if ref.is_dir():
        for name in (BEST, LAST):
            if (ref / name).is_file():
                return ref / name
        raise ConfigError(f"{ref}: run directory has no {BEST} or {LAST}")
    if not ref.is_file():
        raise ConfigError(f"{ref}: no such run directory or checkpoint")
    return ref


def load_model(model_ref: str | Path, device: str = "auto") -> LoadedModel:
    """Rebuild a trained model from its checkpoint alone (config and category map travel inside)."""
    path = resolve_checkpoint(model_ref)
    ckpt = load_checkpoint(path)
    if "config" not in ckpt or "category_map" not in ckpt:
        raise ConfigError(f"{path}: checkpoint has no config/category map (not written by segpipe train)")
    config = config_mod.from_dict(config_mod.parse_yaml(ckpt["config"], source=f"{path}:config", aliases=True))
    cmap = CategoryMap.from_dict(ckpt["category_map"])
    # the checkpoint holds every weight: do not load the pretrained files named in the config again
    model_cfg = config.model.model_copy(update={"weights": None, "backbone_weights": None})
    model = build_model(model_cfg, config.task, cmap.num_labels)
    model.load_state_dict(ckpt["model"])
    dev = device_for(device, DistInfo())  # `auto` picks CUDA when present, as training does
    model.to(dev).eval()
    ignore = config.data.ignore_index if config.data else 255
    adapter = get_adapter(config.task, num_labels=cmap.num_labels, in_channels=config.model.in_channels, ignore_index=ignore)
    return LoadedModel(model, adapter, config, cmap, dev, path)


def predict_items(
    loaded: LoadedModel, items: Sequence[ImageItem], cfg: PredictConfig
) -> Iterator[tuple[ImageItem, np.ndarray, Prediction]]:
    """Yield (item, original RGB image, prediction) per image, in order, batched by ``cfg.batch_size``.
    Image decoding runs one batch ahead in a thread so the model rarely waits for the disk."""
    batches = [items[i : i + cfg.batch_size] for i in range(0, len(items), cfg.batch_size)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = pool.map(lambda b: [read_image(it.path) for it in b], batches)
        for batch_items, images in zip(batches, pending, strict=True):
            preds = predict_arrays(loaded, images, [it.image_id for it in batch_items], cfg)
            yield from zip(batch_items, images, preds, strict=True)


@torch.no_grad()
def predict_arrays(
    loaded: LoadedModel, images: list[np.ndarray], image_ids: list[ImageId], cfg: PredictConfig
) -> list[Prediction]:
    """Predictions for H×W×3 uint8 RGB images, in their own pixels."""
    task = loaded.task
    if task in ("instance", "detection"):
        batch = {"images": [torch.from_numpy(im).permute(2, 0, 1) for im in images], "image_ids": image_ids,
                 "meta": [{} for _ in images]}
        with autocast(loaded.device, loaded.config.train.amp):
            preds = loaded.adapter.predict(loaded.model, loaded.adapter.prepare(batch, loaded.device), cfg.score_threshold)
        for p in preds:
            p.instances = [inst for inst in p.instances if inst.score >= cfg.score_threshold]
        return preds
    if task == "classification":
        batch = _letterboxed_batch(loaded, images, image_ids)
        preds = loaded.adapter.predict(loaded.model, loaded.adapter.prepare(batch, loaded.device))
        for p, im in zip(preds, images, strict=True):
            p.height, p.width = im.shape[:2]
        return preds
    size = loaded.config.train.image_size
    if cfg.tile_size:
        return [_predict_tiled(loaded, im, iid, cfg) for im, iid in zip(images, image_ids, strict=True)]
    batch = _letterboxed_batch(loaded, images, image_ids)
    with autocast(loaded.device, loaded.config.train.amp):
        logits = loaded.adapter.forward_logits(loaded.model, loaded.adapter.prepare(batch, loaded.device)).float()
    preds = []
    for i, (im, iid) in enumerate(zip(images, image_ids, strict=True)):
        h, w = im.shape[:2]
        hh, ww = letterbox_size(h, w, size)
        region = F.interpolate(logits[i : i + 1, :, :hh, :ww], size=(h, w), mode="bilinear", align_corners=False)
        preds.extend(loaded.adapter.decode(region, {"image_ids": [iid], "meta": [{}]}))
    return preds


def _letterboxed_batch(loaded: LoadedModel, images: list[np.ndarray], image_ids: list[ImageId]) -> dict[str, Any]:
    transform = loaded.eval_transform
    arrays = [transform(Sample(image=im, image_id=iid)).image for im, iid in zip(images, image_ids, strict=True)]
    # NHWC memory seen as NCHW, i.e. channels_last: CPU convolutions run faster on it than on a copy
    tensor = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return {"images": tensor, "image_ids": list(image_ids), "meta": [{} for _ in images]}


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of windows of size `tile` covering 0..length, the last flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def _predict_tiled(loaded: LoadedModel, image: np.ndarray, image_id: ImageId, cfg: PredictConfig) -> Prediction:
    tile = int(cfg.tile_size or 0)
    stride = max(1, int(round(tile * (1 - cfg.tile_overlap))))
    h, w = image.shape[:2]
    padded = np.zeros((max(h, tile), max(w, tile), 3), np.uint8)  # images smaller than a tile: pad
    padded[:h, :w] = image
    ph, pw = padded.shape[:2]
    windows = [(y, x) for y in tile_origins(ph, tile, stride) for x in tile_origins(pw, tile, stride)]
    total: torch.Tensor | None = None
    weight = torch.zeros((1, 1, ph, pw), device=loaded.device)
    for chunk in _chunks(windows, cfg.batch_size):
        crops = np.stack([padded[y : y + tile, x : x + tile] for y, x in chunk])
        batch = {"images": torch.from_numpy(crops).permute(0, 3, 1, 2), "image_ids": [image_id] * len(chunk),
                 "meta": [{} for _ in chunk]}
        with autocast(loaded.device, loaded.config.train.amp):
            logits = loaded.adapter.forward_logits(loaded.model, loaded.adapter.prepare(batch, loaded.device)).float()
        if total is None:
            total = torch.zeros((1, logits.shape[1], ph, pw), device=loaded.device)
        for (y, x), out in zip(chunk, logits, strict=True):
            total[0, :, y : y + tile, x : x + tile] += out
            weight[0, :, y : y + tile, x : x + tile] += 1
    assert total is not None  # there is always at least one window
    averaged = (total / weight)[:, :, :h, :w]
    return loaded.adapter.decode(averaged, {"image_ids": [image_id], "meta": [{}]})[0]


def _chunks(seq: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def image_items(images_dir: str | Path, annotations: str | Path | None = None) -> list[ImageItem]:
    """The images to predict: every image under a folder (id = relative path without suffix), or the
    images a COCO file lists (id = the COCO image id, so results import against that dataset).

    Every file is confined (`segpipe.paths`): a COCO ``file_name`` that is absolute or climbs with
    ``..`` is refused, and with a job's roots active, a file (or a symlink) resolving outside them too."""
    from segpipe.data.folders import list_images
    from segpipe.paths import check_read, confine_name

    root = check_read(images_dir, what="images")
    if not root.is_dir():
        raise ConfigError(f"{images_dir}: image folder not found")
    if annotations is None:
        items = []
        for path in list_images(root, recursive=True):
            name = path.relative_to(root).with_suffix("").as_posix()
            items.append(ImageItem(check_read(path, what=f"image {name}"), name, name))
        if not items:
            raise ConfigError(f"{root}: no images found (looked for .jpg, .png, .tif, .bmp, .webp)")
        return items
    from segpipe.data.coco import load_coco

    coco = load_coco(annotations)
    items = []
    for info in (coco.imgs[i] for i in sorted(coco.imgs)):
        file_name = info["file_name"]
        path = confine_name(file_name, root, what=f"{annotations}: image {info['id']}: file_name")
        items.append(ImageItem(path, int(info["id"]), Path(file_name).with_suffix("").as_posix()))
    return items
