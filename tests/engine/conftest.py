"""Trained runs shared by the engine's end-to-end tests (test_runner.py asserts how well each learned,
test_predict.py predicts with them). Each is trained once per session, on CPU, through
`segpipe.engine.runner.train` with a config as a user would write it: generated data used for both
train and val (the model is meant to overfit), no augmentation, tiny models, a few epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from segpipe.config import JobConfig, from_dict
from segpipe.data.synthetic import ShapesCoco, make_class_folders, make_mask_folders, make_shapes_coco
from segpipe.engine.runner import TrainResult, train

SHAPE_CLASSES = ["background", "circle", "square", "triangle"]
# Mask R-CNN / Faster R-CNN on a CPU: small internal resize, few sampled anchors / proposals
RCNN_SMALL = {"min_size": 128, "max_size": 128, "box_batch_size_per_image": 32, "rpn_batch_size_per_image": 64}


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


def _train(config: JobConfig, data: Path) -> Run:
    return Run(config, train(config, show_progress=False), data)


@pytest.fixture(scope="session")
def classification_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("classification")
    data = make_class_folders(root / "data", per_class=6, size=(32, 32))
    config = job_config(
        "classification", same_split({"root": str(data)}),
        {"name": "cnn_small", "channels": [8, 16], "hidden": 32, "dropout": 0.0}, root / "run",
        epochs=15, batch_size=6, lr=3e-3, image_size=32, scheduler="none",
    )  # fmt: skip
    return _train(config, data)


@pytest.fixture(scope="session")
def semantic_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """U-Net on non-square image + mask folders (32×48 images, letterboxed to 48×48)."""
    root = tmp_path_factory.mktemp("semantic")
    images, masks = make_mask_folders(root / "data", n_images=8, size=(32, 48), seed=1)
    config = job_config(
        "semantic", {**same_split({"images": str(images), "masks": str(masks)}), "classes": SHAPE_CLASSES},
        {"name": "unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 16, 16]}, root / "run",
        epochs=12, batch_size=2, lr=3e-3, image_size=48, scheduler="none",
    )  # fmt: skip
    return _train(config, root / "data")


@pytest.fixture(scope="session")
def binary_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """U-Net, binary from COCO (every category is foreground; the crowd region is ignored)."""
    root = tmp_path_factory.mktemp("binary")
    coco = make_shapes_coco(root / "data", n_images=8, size=(32, 48), seed=2)
    config = job_config(
        "binary", same_split(coco_source(coco)),
        {"name": "unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 16, 16]}, root / "run",
        epochs=12, batch_size=2, lr=3e-3, image_size=48, scheduler="none",
    )  # fmt: skip
    return _train(config, root / "data")


@pytest.fixture(scope="session")
def instance_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Mask R-CNN (ResNet-18 FPN) from scratch on four 64×64 images: warm-up and clipping tame the
    huge first gradients of a randomly initialised detector."""
    root = tmp_path_factory.mktemp("instance")
    coco = make_shapes_coco(root / "data", n_images=4, size=(64, 64), seed=0)
    config = job_config(
        "instance", same_split(coco_source(coco)), {"name": "maskrcnn_resnet18_fpn", **RCNN_SMALL}, root / "run",
        epochs=30, batch_size=2, lr=1e-3, image_size=64, warmup_steps=10, grad_clip=10.0, weight_decay=0.0,
    )  # fmt: skip
    return _train(config, root / "data")
