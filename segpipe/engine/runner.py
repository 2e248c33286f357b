"""Config → engine: builds the data, model, adapter, evaluator and hooks of one training run and runs it.

A run directory (``config.output_dir``) holds everything a person or a later job needs::

    config.yaml        the resolved config          categories.json   the label ↔ dataset-id map
    validation.json    the dataset check report     metrics.jsonl     one record per logged step/epoch
    load_report.json   what model.weights gave (tensors loaded / re-initialised / ignored), when set
    last.pt / best.pt  checkpoints                  metrics.json      final metrics of the best weights
    plots/             curves.png, confusion.png, val_overlays.png

The same function runs under a queue worker (``segpipe.pipeline``) and from ``segpipe train``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segpipe import config as config_mod
from segpipe.config import JobConfig
from segpipe.data.augment import letterbox_size
from segpipe.data.categories import CategoryMap
from segpipe.data.dataset import reseed_epoch
from segpipe.engine import distributed as dist_mod
from segpipe.engine.checkpoint import BEST, LAST, load_checkpoint
from segpipe.engine.data_setup import DataBundle, build_eval_loader, prepare_data
from segpipe.engine.evaluate import evaluate
from segpipe.engine.hooks import (
    CheckpointHook,
    EarlyStopHook,
    Hook,
    MetricsLogHook,
    ProgressCallbackHook,
    RichProgressHook,
    StopRequestHook,
)
from segpipe.engine.train import (
    TrainContext,
    TrainState,
    build_optimizer,
    build_scheduler,
    fit,
)
from segpipe.errors import ConfigError
from segpipe.evaluation import make_evaluator
from segpipe.models import get_adapter, model_spec
from segpipe.models.adapter import TaskAdapter
from segpipe.models.finetune import backbone_parameters
from segpipe.models.registry import build_model_reported

log = logging.getLogger("segpipe.train")


@dataclass
class TrainResult:
    run_dir: Path
    state: TrainState
    metrics: dict[str, Any]
    category_map: CategoryMap
    best_checkpoint: Path | None
    last_checkpoint: Path


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def train(
    config: JobConfig,
    *,
    resume: bool | str | Path = False,
    show_progress: bool = True,
    report: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    extra_hooks: tuple[Hook, ...] = (),
) -> TrainResult:
    """Train `config`. ``resume=True`` continues from ``output_dir/last.pt`` when it exists (a fresh
    start otherwise); a path resumes from that checkpoint. ``report`` receives progress dicts;
    ``should_stop`` is polled between steps (cooperative cancellation: the checkpoint is kept)."""
    cfg = config.train
    run_dir = Path(config.output_dir)
    info = dist_mod.init_from_env("cuda" if cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    device = dist_mod.device_for(cfg.device, info)
    seed_everything(cfg.seed, cfg.deterministic)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config_mod.dump(config))

    data = prepare_data(config, run_dir if info.is_main else None, rank=info.rank, world_size=info.world_size)
    cmap = data.category_map
    if info.is_main:
        cmap.save(run_dir / "categories.json")

    model, load_report = build_model_reported(config.model, config.task, cmap.num_labels, cmap)
    model = model.to(device)
    if load_report is not None and info.is_main:
        load_report.save(run_dir)
        log.info("%s", load_report.summary())
        if report is None:  # a person at a terminal (`segpipe train`); jobs log it and keep the file
            print(load_report.summary(), flush=True)
    adapter = get_adapter(config.task, num_labels=cmap.num_labels, in_channels=config.model.in_channels,
                          ignore_index=data.ignore_index)
    adapter.configure_inference(config.predict, evaluation=False)  # validation: tiles at native resolution
    batches = len(data.train_loader)
    if cfg.max_steps_per_epoch:
        batches = min(batches, cfg.max_steps_per_epoch * cfg.accumulate)
    optimizer = build_optimizer(model, cfg, backbone=backbone_parameters(model, model_spec(config.model.name).backbone))
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=-(-batches // cfg.accumulate))
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and cfg.amp == "fp16" else None
    ctx = TrainContext(
        model=dist_mod.wrap(model, device, info),
        adapter=adapter,
        optimizer=optimizer,
        scheduler=scheduler,
        cfg=cfg,
        device=device,
        monitor=cfg.monitor or adapter.default_monitor,
        monitor_mode=cfg.monitor_mode if cfg.monitor else adapter.monitor_mode,
        batches_per_epoch=batches,
        is_main=info.is_main,
        scaler=scaler,
        extra_state={"config": config_mod.dump(config), "category_map": cmap.to_dict(), "task": config.task},
    )
    checkpoint = _resume_point(run_dir, resume)
    if checkpoint is not None:
        ctx.restore(load_checkpoint(checkpoint, map_location=device))

    evaluator = make_evaluator(config.task, cmap, coco_gt=data.coco_gt, ignore_index=data.ignore_index)

    def validate(c: TrainContext) -> dict[str, Any]:
        metrics: list[dict[str, Any]] = [{}]
        if data.val_loader is not None and info.is_main:
            metrics[0] = evaluate(_bare(c.model), adapter, data.val_loader, evaluator, device, cfg.amp)
        if info.enabled:
            torch.distributed.broadcast_object_list(metrics, src=0)
        return metrics[0]

    def before_epoch(epoch: int, start_batch: int) -> None:
        data.train_sampler.set_epoch(epoch, start_batch * cfg.batch_size)
        reseed_epoch(data.train_loader, cfg.seed + info.rank, epoch)

    hooks: list[Hook] = [CheckpointHook(run_dir), MetricsLogHook(run_dir / "metrics.jsonl")]
    if cfg.early_stop_patience:
        hooks.append(EarlyStopHook(cfg.early_stop_patience))
    if should_stop is not None:
        hooks.append(StopRequestHook(_agreed(should_stop, info)))
    if report is not None:
        hooks.append(ProgressCallbackHook(report))
    if show_progress:
        hooks.append(RichProgressHook())
    hooks.extend(extra_hooks)

    state = fit(ctx, data.train_loader, hooks, validate if data.val_loader is not None else None, before_epoch)
    metrics: dict[str, Any] = {}
    completed = state.stop_reason is None or state.stop_reason.startswith("early stop")
    if info.is_main and completed:
        metrics = finish_run(run_dir, _bare(ctx.model), adapter, data, evaluator, device, cfg.amp,
                             overlay_score_threshold=config.predict.score_threshold)
    dist_mod.barrier(info)
    dist_mod.cleanup(info)
    best = run_dir / BEST
    return TrainResult(run_dir, state, metrics, cmap, best if best.is_file() else None, run_dir / LAST)


def _agreed(should_stop: Callable[[], bool], info: dist_mod.DistInfo) -> Callable[[], bool]:
    """Under DDP rank 0 decides and every rank follows: a rank that stopped alone would leave the
    others waiting for it in the next all-reduce forever."""
    if not info.enabled:
        return should_stop

    def decide() -> bool:
        flag = [should_stop() if info.is_main else False]
        torch.distributed.broadcast_object_list(flag, src=0)
        return bool(flag[0])

    return decide


def _bare(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _resume_point(run_dir: Path, resume: bool | str | Path) -> Path | None:
    if resume is False or resume is None:
        return None
    if resume is True:
        last = run_dir / LAST
        return last if last.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise ConfigError(f"--resume: checkpoint {path} not found")
    return path


def finish_run(
    run_dir: Path,
    model: torch.nn.Module,
    adapter: TaskAdapter,
    data: DataBundle,
    evaluator: Any,
    device: torch.device,
    amp: str,
    overlay_score_threshold: float = 0.5,
) -> dict[str, Any]:
    """Evaluate the best weights on the validation split and draw the pictures; returns the metrics.

    The metrics see every detection the model keeps; the overlays draw only those scoring at least
    ``overlay_score_threshold`` (what ``segpipe predict`` would export), or the low-score duplicates
    of every object bury the picture."""
    from segpipe.masks import render

    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    if (run_dir / "metrics.jsonl").is_file():
        render.plot_training_curves(run_dir / "metrics.jsonl", plots / "curves.png")
    if data.val_loader is None:
        return {}
    if (run_dir / BEST).is_file():
        model.load_state_dict(load_checkpoint(run_dir / BEST, map_location=device)["model"])
    shown: list[tuple[np.ndarray, Any]] = []

    def keep(predictions: list[Any], batch: dict[str, Any]) -> None:
        for image, pred, meta in zip(batch["images"], predictions, batch["meta"], strict=True):
            if len(shown) < 8:
                shown.append(_image_region(image.permute(1, 2, 0).numpy(), pred, meta))

    metrics = evaluate(model, adapter, data.val_loader, evaluator, device, amp, on_batch=keep)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if shown:
        render.overlay_grid(shown, data.category_map, plots / "val_overlays.png", score_threshold=overlay_score_threshold)
    if "confusion_matrix" in metrics:
        render.plot_confusion_matrix(np.array(metrics["confusion_matrix"]), metrics["class_names"], plots / "confusion.png")
    return metrics


def _image_region(image: np.ndarray, pred: Any, meta: dict[str, Any]) -> tuple[np.ndarray, Any]:
    """A letterboxed (S×S, padded bottom/right) input and its label map cut to the part that holds
    the image. The padding is ignored in training, so what the model says there is noise that an
    overlay would show as a large bogus region."""
    size = meta.get("orig_size")
    s = image.shape[0]
    if pred.label_map is None or size is None or image.shape[1] != s:
        return image, pred
    hh, ww = letterbox_size(int(size[0]), int(size[1]), s)
    if (hh, ww) == (s, s):
        return image, pred
    region = dataclasses.replace(pred, label_map=np.ascontiguousarray(pred.label_map[:hh, :ww]), height=hh, width=ww)
    return np.ascontiguousarray(image[:hh, :ww]), region


def evaluate_checkpoint(
    config: JobConfig, weights: str | Path, *, split: str = "val", device: str = "auto"
) -> dict[str, Any]:
    """Metrics of a trained checkpoint (or run dir) on a split of `config`'s data."""
    from segpipe.data.sources import build_source
    from segpipe.engine.predict import load_model

    data = config.data
    if data is None or getattr(data, split, None) is None:
        raise ConfigError(f"config has no data.{split} to evaluate on")
    loaded = load_model(weights, device)
    if loaded.task != config.task:
        raise ConfigError(f"{loaded.checkpoint}: trained for task {loaded.task!r}, the config says {config.task!r}")
    source = build_source(getattr(data, split), data, config.task)
    if source.category_map.ids != loaded.category_map.ids:
        raise ConfigError(
            f"data.{split} has categories {list(source.category_map.names)}; {loaded.checkpoint} was trained "
            f"on {list(loaded.category_map.names)}"
        )
    loader = build_eval_loader(config, source, config.train.batch_size, data.num_workers)
    loaded.adapter.configure_inference(config.predict, evaluation=True)  # tiles, test-time augmentation
    evaluator = make_evaluator(config.task, loaded.category_map, coco_gt=getattr(source, "coco", None),
                               ignore_index=data.ignore_index)
    return evaluate(loaded.model, loaded.adapter, loader, evaluator, loaded.device, config.train.amp)


def predict_to_files(
    model_ref: str | Path,
    images: str | Path,
    out_dir: str | Path,
    cfg: Any,
    *,
    annotations: str | Path | None = None,
    device: str = "auto",
    skip: frozenset[str] = frozenset(),
    on_image: Callable[[Any, Any, CategoryMap], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Predict every image of a folder (or of a COCO image list) and write ``cfg.formats`` to
    `out_dir`. ``skip`` holds image ids (as str) already done by a resumed job; ``on_start(todo,
    total)`` is called once the images are listed and ``on_image(item, prediction, category_map)``
    after each image (progress, stores). Returns the writer's summary."""
    from segpipe.engine.predict import image_items, load_model, predict_items
    from segpipe.masks.export import PredictionWriter

    loaded = load_model(model_ref, device)
    listed = image_items(images, annotations)
    items = [it for it in listed if str(it.image_id) not in skip]
    if on_start is not None:
        on_start(len(items), len(listed))
    writer = PredictionWriter(out_dir, cfg.formats, loaded.category_map, loaded.task, cfg.topk)
    try:
        for item, image, pred in predict_items(loaded, items, cfg):
            writer.write(item.name, image, pred)
            if on_image is not None:
                on_image(item, pred, loaded.category_map)
    except BaseException:
        writer.abort()
        raise
    summary = writer.close()
    summary.update({"task": loaded.task, "checkpoint": str(loaded.checkpoint)})
    return summary
