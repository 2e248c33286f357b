"""Contract test over the whole model registry: every model × every task it serves builds with tiny
settings, takes one optimizer step on a batch in the real batch format, and predicts valid Predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from segpipe.config import ModelConfig
from segpipe.models import MODELS, build_model, get_adapter
from segpipe.prediction import Prediction
from tests.models.synth import batch_for

CASES = [(entry.name, task) for entry in MODELS for task in sorted(entry.tags)]
HEAVY = {
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
}


def tiny_params(name: str, task: str) -> dict[str, Any]:
    if name == "cnn_small":
        return {"channels": [8, 16], "hidden": 16}
    if task in ("instance", "detection"):
        # score threshold 0 so that even an untrained model returns instances to check; few sampled
        # proposals keep the box and mask heads cheap on a CPU
        return {
            "min_size": 64,
            "max_size": 128,
            "box_score_thresh": 0.0,
            "box_detections_per_img": 10,
            "box_batch_size_per_image": 32,
        }
    return {}


def num_labels_for(task: str) -> int:
    return 2 if task == "binary" else 3


def check_prediction(p: Prediction, task: str, image_id: Any, h: int, w: int, num_labels: int) -> None:
    assert p.image_id == image_id and p.task == task and (p.height, p.width) == (h, w)
    if task == "classification":
        assert p.scores is not None and p.scores.dtype == np.float32 and p.scores.shape == (num_labels,)
        assert abs(float(p.scores.sum()) - 1) < 1e-4 and p.class_id == int(p.scores.argmax())
    elif task in ("semantic", "binary"):
        assert p.label_map is not None and p.label_map.dtype == np.uint8 and p.label_map.shape == (h, w)
        assert int(p.label_map.max()) < (2 if task == "binary" else num_labels)
    else:
        for inst in p.instances:
            x1, y1, x2, y2 = inst.box
            assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
            assert 1 <= inst.label < num_labels and 0 <= inst.score <= 1
            if task == "instance":
                assert isinstance(inst.rle["counts"], str) and inst.rle["size"] == [h, w]
                decoded = mask_utils.decode({"size": inst.rle["size"], "counts": inst.rle["counts"].encode()})
                assert decoded.shape == (h, w) and set(np.unique(decoded)) <= {0, 1}
            else:
                assert inst.rle is None


@pytest.mark.parametrize(
    ("name", "task"),
    [pytest.param(n, t, marks=pytest.mark.slow) if n in HEAVY else (n, t) for n, t in CASES],
)
def test_train_step_then_predict(name: str, task: str) -> None:
    torch.manual_seed(0)
    num_labels = num_labels_for(task)
    model = build_model(ModelConfig(name=name, **tiny_params(name, task)), task, num_labels)
    adapter = get_adapter(task, num_labels=num_labels)
    size = (64, 64)  # 32 px leaves deep resnets 1×1 maps: train-mode BN over 2 values explodes
    raw = batch_for(task, num_labels, size=size)
    batch = adapter.prepare(raw, "cpu")

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    first_name, first = trainable[0]
    before = first.detach().clone()
    # a small step: from scratch, Mask R-CNN's first gradients are large (norm ~1e3)
    optimizer = torch.optim.SGD([p for _, p in trainable], lr=1e-4)
    losses = adapter.loss(model, batch)
    assert model.training and losses
    for key, value in losses.items():
        assert value.ndim == 0 and torch.isfinite(value), f"{key} = {value}"
    optimizer.zero_grad()
    sum(losses.values()).backward()
    # the gradient reaches the very first layer, so it flows through the whole network
    assert first.grad is not None and first.grad.abs().sum() > 0, first_name
    optimizer.step()
    assert not torch.equal(before, first.detach())

    predictions = adapter.predict(model, batch, score_threshold=0.0)
    assert not model.training and len(predictions) == len(raw["image_ids"])
    for p, image_id, meta in zip(predictions, raw["image_ids"], raw["meta"], strict=True):
        check_prediction(p, task, image_id, *size, num_labels)
        assert p.meta == meta
    if task in ("instance", "detection"):
        assert any(p.instances for p in predictions), "threshold 0 must leave some instances"


def test_registry_covers_every_task_kind() -> None:
    from segpipe.task_kinds import TASK_KINDS

    assert {t for _, t in CASES} == set(TASK_KINDS)
