"""Helpers for the engine's end-to-end tests: job configs as a user would write them, and a trained
run (config, result, dataset folder). The shared trained runs themselves are fixtures in conftest.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segpipe.config import JobConfig, from_dict
from segpipe.data.synthetic import ShapesCoco
from segpipe.engine.runner import TrainResult, train

SHAPE_CLASSES = ["background", "circle", "square", "triangle"]
# R-CNNs on a CPU: few sampled anchors and proposals, few detections kept (the images hold at most
# 4 shapes, and in evaluation each kept detection costs Mask R-CNN a mask-head pass)
RCNN_SMALL = {"box_batch_size_per_image": 32, "rpn_batch_size_per_image": 64, "box_detections_per_img": 10}


@dataclass
class Run:
    config: JobConfig
    result: TrainResult
    data: Path  # the generated dataset's folder

    @property
    def dir(self) -> Path:
        return self.result.run_dir


def job_config(task: str, data: dict[str, Any], model: dict[str, Any], out: Path, **train: Any) -> JobConfig:
    """A validated job config; `data` holds the splits and data options, `train` overrides the loop."""
    return from_dict(
        {
            "task": task,
            "data": {"num_workers": 0, **data},
            "augment": {"preset": "none"},
            "model": model,
            "train": {"device": "cpu", "seed": 0, **train},
            "output_dir": str(out),
        }
    )


def same_split(source: dict[str, Any]) -> dict[str, Any]:
    return {"train": source, "val": source}


def coco_source(coco: ShapesCoco) -> dict[str, str]:
    return {"images": str(coco.images), "annotations": str(coco.annotations)}


def train_run(config: JobConfig, data: Path) -> Run:
    return Run(config, train(config, show_progress=False), data)


def train_on_one_thread(spec: dict[str, Any]) -> TrainResult:
    """`train` a config dict on one torch thread (the suite's setting, restored after): the models the live
    tests serve, trained in the test process."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(from_dict(spec), show_progress=False)
    finally:
        torch.set_num_threads(threads)
