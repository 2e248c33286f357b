"""Config → engine: builds the data, model, adapter, evaluator and hooks of one training run and runs it.

A run directory (``config.output_dir``) holds everything a person or a later job needs::

    config.yaml        the resolved config          categories.json   the label ↔ dataset-id map
    validation.json    the dataset check report     metrics.jsonl     one record per logged step/epoch
    load_report.json   what model.weights gave (tensors loaded / re-initialised / ignored), when set
    last.pt / best.pt  checkpoints                  metrics.json      final metrics of the best weights
    plots/             curves.png, val_overlays.png (truth next to prediction), pr_curves.png,
                       ap_per_class.png (box/mask AP), confusion.png (dense tasks, classes)
    events.out.tfevents.*  TensorBoard scalars and pictures

The same function runs under a queue worker (``segpipe.jobs.training``) and from ``segpipe train``.
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
    StopRequestHook,
)
from segpipe.engine.progress_hooks import Throughput, ThroughputHook, display_hooks
from segpipe.engine.threads import configure_threads
from segpipe.engine.train import (
    TrainContext,
    TrainState,
    build_optimizer,
    build_scheduler,
    fit,
)
from segpipe.errors import ConfigError
from segpipe.evaluation import make_evaluator
from segpipe.masks.rows import DEFAULT_SCORE_THRESHOLD
from segpipe.models import get_adapter, model_spec
from segpipe.models.adapter import TaskAdapter
from segpipe.models.finetune import backbone_parameters
from segpipe.models.registry import build_model_reported

log = logging.getLogger("segpipe.train")
# Under DDP the stop decision is a collective every rank joins (rank 0 decides, `_agreed`): asked every
# 8 steps and at each epoch's end, not every step, so a cancel waits a few steps instead of every step
# paying a broadcast (measured by bench/ddp_scaling.py).
AGREED_STOP_EVERY = 8


@dataclass
class TrainResult:
    run_dir: Path
    state: TrainState
    metrics: dict[str, Any]
    category_map: CategoryMap
    best_checkpoint: Path | None
    last_checkpoint: Path
    tracking: dict[str, str] = dataclasses.field(default_factory=dict)  # tracked runs' ids (MLflow run…)


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
    tracking_tags: dict[str, str] | None = None,
) -> TrainResult:
    """Train `config`. ``resume=True`` continues from ``output_dir/last.pt`` when it exists (a fresh
    start otherwise); a path resumes from that checkpoint. ``report`` receives progress dicts;
    ``should_stop`` is polled between steps (cooperative cancellation: the checkpoint is kept)."""
    cfg = config.train
    run_dir = Path(config.output_dir)
    info = dist_mod.init_from_env("cuda" if cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    device = dist_mod.device_for(cfg.device, info)
    seed_everything(cfg.seed, cfg.deterministic)
    configure_threads(cfg.threads)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config_mod.dump(config))

    data = prepare_data(config, run_dir if info.is_main else None, rank=info.rank, world_size=info.world_size)
    cmap = data.category_map
    if info.is_main:
        cmap.save(run_dir / "categories.json")

    model, load_report = build_model_reported(config.model, config.task, cmap.num_labels, cmap)
    model = dist_mod.sync_batchnorm(model, device, info) if cfg.sync_batchnorm else model
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
    cfg = cfg.model_copy(update={"lr": dist_mod.scaled_lr(cfg.lr, cfg.lr_scaling, info.world_size)})
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
    restored = _load_resume_point(run_dir, resume, device, info)
    if restored is not None:
        ctx.restore(restored)

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

    throughput = Throughput()
    hooks: list[Hook] = [ThroughputHook(throughput), CheckpointHook(run_dir), MetricsLogHook(run_dir / "metrics.jsonl")]
    if cfg.early_stop_patience:
        hooks.append(EarlyStopHook(cfg.early_stop_patience))
    if should_stop is not None:
        hooks.append(StopRequestHook(_agreed(should_stop, info),
                                     every_steps=AGREED_STOP_EVERY if info.enabled else 1))
    if report is not None:
        hooks.append(ProgressCallbackHook(report, throughput=throughput))
    if show_progress:
        hooks.extend(display_hooks(throughput))
    hooks.extend(extra_hooks)
    tracking = open_tracking(config, run_dir, tracking_tags or {}) if info.is_main else None
    if tracking is not None:
        hooks.append(tracking)

    state = fit(ctx, data.train_loader, hooks, validate if data.val_loader is not None else None, before_epoch)
    metrics: dict[str, Any] = {}
    completed = state.stop_reason is None or state.stop_reason.startswith("early stop")
    if info.is_main and completed:
        metrics = finish_run(run_dir, _bare(ctx.model), adapter, data, evaluator, device, cfg.amp,
                             overlay_score_threshold=config.predict.score_threshold)
    refs: dict[str, str] = {}
    if tracking is not None:
        refs = tracking.finish(metrics, sorted((run_dir / "plots").glob("*.png")), run_files(run_dir), state.step,
                               status="FINISHED" if completed else "KILLED")
    dist_mod.barrier(info)
    dist_mod.cleanup(info)
    best = run_dir / BEST
    return TrainResult(run_dir, state, metrics, cmap, best if best.is_file() else None, run_dir / LAST, refs)


RUN_FILES = ("config.yaml", "categories.json", "metrics.json", "metrics.jsonl", "validation.json")


def run_files(run_dir: Path) -> dict[str, Path]:
    """The run's small files (config, category map, metrics, dataset report) that exist, by name."""
    return {n: run_dir / n for n in RUN_FILES if (run_dir / n).is_file()}


def open_tracking(config: JobConfig, run_dir: Path, tags: dict[str, str]) -> Any:
    """The tracking hook of a run (TensorBoard always, MLflow when a tracking URI is set)."""
    import yaml

    from segpipe.tracking import TrackingContext, TrackingHook

    name = config.name or "segpipe"
    ctx = TrackingContext(run_dir=run_dir, config=yaml.safe_load(config_mod.dump(config)),
                          run_name=tags.get("segpipe.job_id", run_dir.name), experiment=name, tags=tags)
    return TrackingHook(ctx)


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


def _load_resume_point(run_dir: Path, resume: bool | str | Path, device: torch.device,
                       info: dist_mod.DistInfo) -> dict[str, Any] | None:
    """The checkpoint to resume from. Under DDP rank 0 reads it and sends it to every rank: the other
    ranks may run on hosts whose run folder is empty or older (only rank 0 writes checkpoints)."""
    if not info.enabled:
        checkpoint = _resume_point(run_dir, resume)
        return None if checkpoint is None else load_checkpoint(checkpoint, map_location=device)
    box: list[Any] = [None]
    if info.is_main:
        checkpoint = _resume_point(run_dir, resume)
        box[0] = None if checkpoint is None else load_checkpoint(checkpoint, map_location="cpu")
    torch.distributed.broadcast_object_list(box, src=0)  # between this job's own ranks only
    if box[0] is not None:
        log.info("rank %d resumes from epoch %s", info.rank, box[0].get("train_state", {}).get("epoch"))
    return box[0]


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
    overlay_score_threshold: float = DEFAULT_SCORE_THRESHOLD,
) -> dict[str, Any]:
    """Evaluate the best weights on the validation split and draw the pictures; returns the metrics.

    The metrics see every detection the model keeps; the overlays draw only those scoring at least
    ``overlay_score_threshold`` (what ``segpipe predict`` would export), or the low-score duplicates
    of every object bury the picture."""
    from segpipe.engine import run_pictures

    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    run_pictures.draw_curves(run_dir)
    if data.val_loader is None:
        return {}
    if (run_dir / BEST).is_file():
        model.load_state_dict(load_checkpoint(run_dir / BEST, map_location=device)["model"])
    showcase = run_pictures.ValidationShowcase()
    metrics = evaluate(model, adapter, data.val_loader, evaluator, device, amp, on_batch=showcase.keep)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    showcase.draw(data.category_map, plots / run_pictures.VAL_OVERLAYS, overlay_score_threshold)
    run_pictures.draw_evaluation(evaluator, metrics, plots)
    return metrics


def evaluate_checkpoint(
    config: JobConfig, weights: str | Path, *, split: str = "val", device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Metrics of a trained checkpoint (or run dir) on a split of `config`'s data. ``progress(done,
    total)`` is called with image counts after every batch."""
    from segpipe.data.sources import build_source
    from segpipe.engine.predict import load_model

    data = config.data
    if data is None or getattr(data, split, None) is None:
        raise ConfigError(f"config has no data.{split} to evaluate on")
    configure_threads(config.train.threads)
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
    total, done = len(source), [0]

    def counted(predictions: list[Any], batch: dict[str, Any]) -> None:
        done[0] += len(predictions)
        if progress is not None:
            progress(done[0], total)

    return evaluate(loaded.model, loaded.adapter, loader, evaluator, loaded.device, config.train.amp, on_batch=counted)


def predict_to_files(
    model_ref: Any,
    images: str | Path,
    out_dir: str | Path,
    cfg: Any,
    *,
    annotations: str | Path | None = None,
    device: str = "auto",
    skip: frozenset[str] = frozenset(),
    on_image: Callable[[Any, Any, CategoryMap], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_failed: Callable[[Any, str], None] | None = None,
    write_files: bool = True,
    model_version: str | None = None,
) -> dict[str, Any]:
    """Predict every image of a folder (or of a COCO image list) and export ``cfg.formats`` (None: the
    task's defaults) to `out_dir` through the export registry; ``model_ref`` is a run folder / checkpoint, or a `LoadedModel`
    already in memory. ``skip`` holds image ids (as str) already
    done by a resumed job; ``on_start(todo, total)`` is called once the images are listed and
    ``on_image(item, prediction, category_map)`` after each image (progress, stores);
    ``on_failed(item, reason)`` for an image that cannot be read or is over the admission limits (it is
    skipped; the summary's ``failed_images`` lists them all either way). ``write_files``
    False only predicts (a predict job exports from its store afterwards). Returns a summary."""
    from segpipe.engine.predict import LoadedModel, image_items, load_model, predict_items
    from segpipe.masks.formats import ExportContext, MultiExport, check_formats, default_formats
    from segpipe.masks.rows import categories_of, export_image

    configure_threads()
    loaded = model_ref if isinstance(model_ref, LoadedModel) else load_model(model_ref, device)
    names = check_formats(cfg.formats or default_formats(loaded.task), loaded.task)
    root = Path(images)
    listed = image_items(root, annotations)
    items = [it for it in listed if str(it.image_id) not in skip]
    if on_start is not None:
        on_start(len(items), len(listed))
    writer = None
    if write_files:
        ctx = ExportContext(task=loaded.task, categories=categories_of(loaded.category_map),
                            score_threshold=cfg.score_threshold, segmentation=cfg.segmentation,
                            image_url_prefix=cfg.image_url_prefix,
                            model_version=model_version or loaded.config.name or Path(loaded.checkpoint).parent.name)
        writer = MultiExport(names, ctx, Path(out_dir))
    failed: list[dict[str, str]] = []

    def skipped(item: Any, reason: str) -> None:
        failed.append({"image": str(item.image_id), "reason": reason})
        if on_failed is not None:
            on_failed(item, reason)

    try:
        for item, image, pred in predict_items(loaded, items, cfg, on_failed=skipped):
            if writer is not None:
                writer.add(export_image(pred, loaded.category_map, _file_name(item.path, root), topk=cfg.topk,
                                        image=image, path=item.path))
            if on_image is not None:
                on_image(item, pred, loaded.category_map)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    files = writer.close() if writer is not None else {}
    return {"images": len(items) - len(failed), "out_dir": str(out_dir), "formats": names, "files": files,
            "task": loaded.task, "checkpoint": str(loaded.checkpoint), "failed_images": failed}


def _file_name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name
