"""``segpipe demo``: the whole service end to end on embedded defaults, with no server to set up.

It makes a small dataset of shapes (COCO instances), starts a worker process on a SQLite broker and
store, queues a training job and then a predict job through that queue, follows both with progress
bars, and writes masks (PNG, polygons, COCO RLE) and overlay pictures, saying where.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from segpipe.processes import stop_process

console = Console(highlight=False)


@dataclass(frozen=True)
class DemoPlan:
    home: Path
    out: Path
    epochs: int
    train_images: int
    image_size: int


def demo_train_spec(data: Path, plan: DemoPlan) -> dict[str, Any]:
    """The demo's training job: the light Mask R-CNN on 96-px shapes, sized for two CPU cores.

    torchvision's R-CNN defaults are made for 800-px photos with dozens of objects. Profiled on a CPU,
    the backbone is a few percent of a step; the mask head (four 256-channel convolutions per positive
    region, forward and backward) is most of it, and it runs on every positive of the sampled regions
    (a quarter of ``box_batch_size_per_image``). Shapes images hold at most three objects, so 16 sampled
    regions (4 positives) per image, 150 proposals and the images at their own 96 px (no upscaling)
    lose nothing and cost less than half the CPU per image of 64 regions at 128 px. Every epoch ends
    with a validation and checkpoints, so the demo's 400 training images come as 80 images × 5 epochs
    rather than 32 × 10 (figures measured in the README's Quick start)."""
    return {
        "name": "shapes",
        "task": "instance",
        "data": {
            "train": {"images": str(data / "train/images"), "annotations": str(data / "train/annotations.json")},
            "val": {"images": str(data / "val/images"), "annotations": str(data / "val/annotations.json")},
            "num_workers": 0,
        },
        "augment": {"preset": "light"},
        "model": {"name": "maskrcnn_resnet18_fpn", "min_size": plan.image_size, "max_size": plan.image_size,
                  "rpn_pre_nms_top_n_train": 150, "rpn_post_nms_top_n_train": 150,
                  "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50,
                  "rpn_batch_size_per_image": 64, "box_batch_size_per_image": 16, "box_detections_per_img": 10},
        "train": {"epochs": plan.epochs, "batch_size": 4, "image_size": plan.image_size, "lr": 0.01,
                  "optimizer": "sgd", "warmup_steps": 10, "grad_clip": 10.0},
    }


def make_demo_data(data: Path, plan: DemoPlan) -> None:
    from segpipe.data.synthetic import make_shapes_coco

    size = (plan.image_size, plan.image_size)
    if _generated_images(data / "train/annotations.json") != plan.train_images:  # absent, or another --images
        shutil.rmtree(data, ignore_errors=True)
        make_shapes_coco(data / "train", n_images=plan.train_images, size=size, seed=1)
        make_shapes_coco(data / "val", n_images=8, size=size, seed=2)
        unlabeled = make_shapes_coco(data / "incoming", n_images=6, size=size, seed=3, empty_images=0)
        unlabeled.annotations.unlink()  # images to pre-label: no annotations


def _generated_images(annotations: Path) -> int | None:
    try:
        return len(json.loads(annotations.read_text())["images"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_demo(plan: DemoPlan) -> int:
    """Returns a process exit status (0 when both jobs succeeded)."""
    home, data = plan.home.resolve(), plan.home.resolve() / "data" / "demo"
    os.environ.update({"SEGPIPE_HOME": str(home), "SEGPIPE_DATA_ROOTS": str(home / "data")})
    for var in ("SEGPIPE_DATABASE_URL", "SEGPIPE_BROKER_URL"):
        os.environ.pop(var, None)  # embedded defaults: SQLite store and SQLite broker under SEGPIPE_HOME
    from segpipe.settings import get_settings

    get_settings.cache_clear()
    console.rule("[bold]segpipe demo")
    console.print(f"home {escape(str(home))}: SQLite store + SQLite broker, no server needed")
    make_demo_data(data, plan)
    console.print(f"dataset: {plan.train_images} training and 8 validation images of shapes (COCO, sparse category "
                  f"ids), 6 new images to pre-label → {escape(str(data))}")

    from segpipe.cli.service_cmds import _follow
    from segpipe.service import submit
    from segpipe.stores import Stores
    from workers.celery_app import create_app

    settings = get_settings()
    stores, celery_app = Stores.from_settings(settings), create_app(settings)
    worker = _start_worker(home)
    try:
        train_job = submit(stores, celery_app, settings, "train", demo_train_spec(data, plan), submitted_by="demo")
        console.print(f"\n[bold]1. training[/] job {train_job.id} queued (Mask R-CNN, {plan.epochs} epochs)")
        if _follow(stores, train_job.id) != "succeeded":
            return _explain_failure(stores, train_job.id, worker)
        metrics = (stores.jobs.get(train_job.id).progress or {}).get("metrics", {})
        shown = ", ".join(f"{k} {metrics[k]:.3f}" for k in ("segm_AP", "segm_AP50", "bbox_AP", "bbox_AP50") if k in metrics)
        console.print(f"validation (8 images the model never trained on): {shown}")

        spec = {"model": f"job:{train_job.id}", "images": str(data / "incoming/images"),
                "predict": {"formats": ["png", "polygons", "overlay"], "score_threshold": 0.5}}
        predict_job = submit(stores, celery_app, settings, "predict", spec, submitted_by="demo")
        console.print(f"\n[bold]2. prediction[/] job {predict_job.id} queued (6 new images)")
        if _follow(stores, predict_job.id) != "succeeded":
            return _explain_failure(stores, predict_job.id, worker)
        _collect(stores, train_job.id, predict_job.id, plan.out.resolve())
        return 0
    finally:
        stop_process(worker)
        stores.close()


def _start_worker(home: Path) -> subprocess.Popen[bytes]:
    log = (home / "worker.log").open("ab")
    cmd = [sys.executable, "-m", "segpipe", "worker", "--loglevel", "warning", "--queues", "gpu,cpu"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    console.print(f"worker started (pid {proc.pid}, log {escape(str(home / 'worker.log'))})")
    time.sleep(0.5)
    return proc


def _explain_failure(stores: Any, job_id: str, worker: subprocess.Popen[bytes]) -> int:
    job = stores.jobs.get(job_id)
    console.print(f"[red]job {job_id} {job.state}[/]: {escape(job.error or '(no error recorded)')}")
    if worker.poll() is not None:
        console.print(f"[red]the worker exited with status {worker.returncode}[/]; see worker.log")
    return 1


def _collect(stores: Any, train_id: str, predict_id: str, out: Path) -> None:
    from segpipe.jobs.exports import export_job

    out.mkdir(parents=True, exist_ok=True)
    predictions = stores.artifacts.job_dir(predict_id) / "predictions"
    if (predictions / "overlays").is_dir():
        shutil.copytree(predictions / "overlays", out / "overlays", dirs_exist_ok=True)
    for fmt, folder in (("png", "masks_png"), ("polygons", "masks_polygons"), ("coco-results", "masks_coco_rle"),
                        ("coco", "cvat_coco"),
                        ("cvat-mask", "cvat_mask"), ("label-studio", "label_studio")):
        export_job(stores, predict_id, out / folder, [fmt])
    plots = stores.artifacts.job_dir(train_id) / "run" / "plots"
    if plots.is_dir():
        shutil.copytree(plots, out / "training_plots", dirs_exist_ok=True)
    run_dir = stores.artifacts.job_dir(train_id) / "run"
    console.rule("[bold green]done")
    console.print(f"results in {escape(str(out))}:")
    for name, what in (
        ("overlays/", "predicted masks drawn on each new image"),
        ("masks_png/", "class-id PNG per image; instance maps + sidecar JSON"),
        ("masks_polygons/", "polygons JSON per image (size, category id and name)"),
        ("masks_coco_rle/predictions.json", "COCO results with RLE masks (COCO.loadRes, COCOeval)"),
        ("cvat_coco/", "CVAT 'COCO 1.0' import (annotations/instances_default.json)"),
        ("cvat_mask/cvat-mask.zip", "CVAT 'Segmentation mask 1.1' import"),
        ("label_studio/", "Label Studio tasks.json with predictions + label_config.xml"),
        ("training_plots/", "training curves, ground truth vs prediction, PR curves, AP per class"),
    ):
        console.print(f"  {name:<30} {what}")
    console.print(f"training run (checkpoints, metrics, TensorBoard events): {escape(str(run_dir))}")
    console.print(f"  compare runs: tensorboard --logdir {escape(str(run_dir.parent.parent))}")
