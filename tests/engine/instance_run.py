"""The shared trained Mask R-CNN (`instance_run`): registered once for the whole test session in
tests/conftest.py, so the engine tests and the Label Studio box-to-mask test train it once per process."""

from __future__ import annotations

import pytest
import torch

from segpipe.data.synthetic import make_shapes_coco
from tests.engine.runs import RCNN_SMALL, Run, coco_source, job_config, same_split, train_run


@pytest.fixture(scope="session")
def instance_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Mask R-CNN (ResNet-18 FPN) from scratch on four 64×64 images, resized ×2 inside the model so
    the shapes meet its smallest (32 px) anchors. Warm-up and clipping tame the huge first gradients
    of a randomly initialised detector; segm_AP reaches ~0.6 in 30 epochs (~2 CPU minutes)."""
    root = tmp_path_factory.mktemp("instance")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the engine tests' one_torch_thread, for callers outside tests/engine
    coco = make_shapes_coco(root / "data", n_images=4, size=(64, 64), seed=0)
    model = {"name": "maskrcnn_resnet18_fpn", "min_size": 128, "max_size": 128, **RCNN_SMALL}
    config = job_config(
        "instance", same_split(coco_source(coco)), model, root / "run",
        epochs=30, batch_size=2, lr=1e-3, image_size=64, warmup_steps=10, grad_clip=10.0, weight_decay=0.0,
    )  # fmt: skip
    try:
        return train_run(config, root / "data")
    finally:
        torch.set_num_threads(threads)
