"""Each adapter's targets and losses are wired so that a model can learn: the summed loss falls over
20 optimizer steps on one fixed tiny batch. (The engine's own overfit tests live in tests/engine.)"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from segpipe.config import ModelConfig
from segpipe.models import build_model, get_adapter
from tests.models.synth import batch_for

STEPS = 20
# few sampled proposals: Mask R-CNN's mask head costs ~0.1 s per positive proposal and step on a CPU
RCNN = {"min_size": 64, "max_size": 64, "box_batch_size_per_image": 8, "rpn_batch_size_per_image": 64}

CASES: list[Any] = [
    # name, task, num_labels, params, learning rate
    pytest.param(
        "cnn_small",
        "classification",
        3,
        {"channels": [8, 16], "hidden": 32, "dropout": 0.0},
        3e-3,
        id="cnn_small",
    ),
    pytest.param("unet", "binary", 2, {"decoder_channels": [16] * 5}, 1e-3, id="unet-binary"),
    pytest.param("unet", "semantic", 4, {"decoder_channels": [16] * 5}, 1e-3, id="unet-semantic"),
    pytest.param(
        "maskrcnn_resnet18_fpn", "instance", 4, RCNN, 1e-4, marks=pytest.mark.slow, id="maskrcnn_resnet18"
    ),
    pytest.param(
        "fasterrcnn_mobilenet_v3_large_fpn",
        "detection",
        4,
        RCNN,
        1e-4,
        marks=pytest.mark.slow,
        id="fasterrcnn_mobilenet",
    ),
]


@pytest.mark.parametrize(("name", "task", "num_labels", "params", "lr"), CASES)
def test_loss_falls_on_a_fixed_batch(
    name: str, task: str, num_labels: int, params: dict[str, Any], lr: float
) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, **params), task, num_labels)
    adapter = get_adapter(task, num_labels=num_labels)
    size = (32, 32) if task == "classification" else (64, 64)
    batch = adapter.prepare(
        batch_for(task, num_labels, n=2 if task != "classification" else 3, size=size), "cpu"
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0)
    history = []
    for _ in range(STEPS):
        losses = adapter.loss(model, batch)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(total.item())
    first, last = sum(history[:3]) / 3, sum(history[-3:]) / 3
    assert last < 0.7 * first, (
        f"{name}/{task}: loss {first:.3f} → {last:.3f} ({[round(h, 3) for h in history]})"
    )
