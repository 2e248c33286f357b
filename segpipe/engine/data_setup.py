"""The data side of a run: check the dataset, build sources, transforms and loaders for train and val.

Every run validates its data first (the same checks as ``segpipe validate``) and refuses errors unless
``data.skip_invalid: true``, in which case the flagged images/annotations are skipped and listed in
``validation.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segpipe.config import JobConfig
from segpipe.data.augment import build_transform
from segpipe.data.categories import CategoryMap
from segpipe.data.dataset import TaskDataset, build_loader
from segpipe.data.sources import Source, build_source
from segpipe.data.validate import validate_config
from segpipe.engine.sampler import EpochSampler
from segpipe.errors import ConfigError, DataError
from segpipe.models.tasks import adapter_class
from segpipe.vocabulary import IGNORE_INDEX, RunFiles

_SHOWN_ISSUES = 8


@dataclass
class DataBundle:
    category_map: CategoryMap
    train_source: Source
    train_loader: Any
    train_sampler: EpochSampler
    val_source: Source | None
    val_loader: Any | None
    coco_gt: Any | None  # pycocotools COCO of the val split (instance / detection)
    ignore_index: int
    skipped: dict[str, dict[str, list[Any]]]


def eval_transform(config: JobConfig) -> Any:
    """Evaluation transform: the task adapter's (None for detectors, which resize internally)."""
    data = config.data
    ignore = data.ignore_index if data is not None else IGNORE_INDEX
    return adapter_class(config.task).eval_transform(config.augment, config.train.image_size, ignore, config.predict)


def build_eval_loader(config: JobConfig, source: Source, batch_size: int, num_workers: int) -> Any:
    """A deterministic loader over `source` with the task's evaluation transform."""
    dataset = TaskDataset(source, eval_transform(config), config.task)
    if config.predict.evaluate_tiled and config.predict.tile_size:
        batch_size = 1  # native resolution: images of different sizes do not stack
    sampler = EpochSampler(len(dataset), shuffle=False)
    return build_loader(dataset, batch_size, False, num_workers, config.train.seed, sampler=sampler)


def check_dataset(config: JobConfig, run_dir: Path | None) -> dict[str, dict[str, list[Any]]]:
    """Validate every split; raise DataError with the first problems unless ``skip_invalid``.
    Returns, per split, the image and annotation ids to skip. With a `run_dir`, writes
    ``validation.json``: per split the report plus ``skipped: {images, annotations}``."""
    if config.data is None:
        raise ConfigError("the config has no 'data' section")
    reports = validate_config(config)
    skipped: dict[str, dict[str, list[Any]]] = {}
    failure: DataError | None = None
    for split, report in reports.items():
        if report.ok:
            continue
        try:
            report.raise_for_errors(skip_invalid=config.data.skip_invalid, max_shown=_SHOWN_ISSUES)
        except DataError as e:
            hint = ("" if config.data.skip_invalid
                    else " (fix them, or set data.skip_invalid: true to skip the bad images/annotations)")
            failure = DataError(f"data.{split}: {e}{hint}")
            break
        skipped[split] = {
            "images": sorted(report.bad_image_ids(), key=str),
            "annotations": sorted(report.bad_annotation_ids()),
        }
    if run_dir is not None:
        # the report is written before refusing, so a failed run still shows every issue; each split
        # also lists the ids `skip_invalid` left out of training
        record = {split: {**r.to_dict(), "skipped": skipped.get(split, {"images": [], "annotations": []})}
                  for split, r in reports.items()}
        (run_dir / RunFiles.VALIDATION).write_text(json.dumps(record, indent=1, default=str))
    if failure is not None:
        raise failure
    return skipped


def prepare_data(config: JobConfig, run_dir: Path | None, *, rank: int = 0, world_size: int = 1) -> DataBundle:
    data = config.data
    if data is None:
        raise ConfigError("training needs a 'data' section with at least data.train")
    skipped = check_dataset(config, run_dir)
    task, cfg = config.task, config.train

    def source_for(split: str) -> Source:
        src = getattr(data, split)
        skip = skipped.get(split, {})
        return build_source(src, data, task, exclude_images=skip.get("images", ()),
                            exclude_annotations=skip.get("annotations", ()))

    train_source = source_for("train")
    if len(train_source) == 0:
        raise DataError(f"data.train: no usable samples in {next(iter(data.train.paths().values()))}")
    train_tf = build_transform(config.augment, task, cfg.image_size, train=True, ignore_index=data.ignore_index)
    train_set = TaskDataset(train_source, train_tf, task)
    sampler = EpochSampler(len(train_set), shuffle=True, seed=cfg.seed, rank=rank, world_size=world_size,
                           repeats=cfg.epoch_repeats)
    train_loader = build_loader(train_set, cfg.batch_size, True, data.num_workers, cfg.seed + rank,
                                drop_last=len(sampler) > cfg.batch_size, sampler=sampler)

    val_source = val_loader = coco_gt = None
    if data.val is not None:
        val_source = source_for("val")
        if val_source.category_map.ids != train_source.category_map.ids:
            raise DataError(
                f"data.val has categories {list(val_source.category_map.names)} but data.train has "
                f"{list(train_source.category_map.names)}: both splits must share one category list"
            )
        val_loader = build_eval_loader(config, val_source, cfg.batch_size, data.num_workers)
        coco_gt = getattr(val_source, "coco", None)
    return DataBundle(train_source.category_map, train_source, train_loader, sampler, val_source, val_loader,
                      coco_gt, data.ignore_index, skipped)
