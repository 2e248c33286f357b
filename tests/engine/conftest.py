"""Trained runs shared by the engine's end-to-end tests (test_runner.py asserts how well each learned,
test_predict.py predicts with them). Each is trained once per session, on CPU, through
`segpipe.engine.runner.train` with a config as a user would write it: generated data used for both
train and val (the model is meant to overfit), no augmentation, tiny models, a few epochs.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from segpipe.data.synthetic import make_class_folders, make_mask_folders, make_shapes_coco
from tests.engine.runs import SHAPE_CLASSES, Run, coco_source, job_config, same_split, train_run


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Any:
    """These models are tiny: a second intra-op thread gains nothing, and on a 2-core machine whose
    cores other jobs keep busy, OpenMP's spin-waiting made training 10–40× slower (measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def classification_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("classification")
    data = make_class_folders(root / "data", per_class=6, size=(32, 32))
    config = job_config(
        "classification", same_split({"root": str(data)}),
        {"name": "cnn_small", "channels": [8, 16], "hidden": 32, "dropout": 0.0}, root / "run",
        epochs=15, batch_size=6, lr=3e-3, image_size=32, scheduler="none",
    )  # fmt: skip
    return train_run(config, data)


@pytest.fixture(scope="session")
def semantic_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """U-Net on non-square image + mask folders (48×64 images, letterboxed to 64×64). Seed 3 gives
    every class 3–4 % of the pixels; with a class at 1 % (seed 1) that class was still unlearned
    after 30 epochs, so the metric would measure the dice roll, not the engine."""
    root = tmp_path_factory.mktemp("semantic")
    images, masks = make_mask_folders(root / "data", n_images=8, size=(48, 64), seed=3)
    config = job_config(
        "semantic", {**same_split({"images": str(images), "masks": str(masks)}), "classes": SHAPE_CLASSES},
        {"name": "unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 16, 16]}, root / "run",
        epochs=30, batch_size=2, lr=3e-3, image_size=64,
    )  # fmt: skip
    return train_run(config, root / "data")


@pytest.fixture(scope="session")
def binary_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """U-Net, binary from COCO (every category is foreground; the crowd region is ignored)."""
    root = tmp_path_factory.mktemp("binary")
    coco = make_shapes_coco(root / "data", n_images=8, size=(32, 48), seed=2)
    config = job_config(
        "binary", same_split(coco_source(coco)),
        {"name": "unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 16, 16]}, root / "run",
        epochs=25, batch_size=2, lr=3e-3, image_size=48,
    )  # fmt: skip
    return train_run(config, root / "data")
