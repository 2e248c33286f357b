"""Transfer that helps, measured with a fixed seed: a U-Net trained on one generated dataset (semantic:
circles vs squares), fine-tuned through ``model.weights`` on another with other classes (binary: "any
shape", triangles — which it never saw — included), reaches the target IoU in fewer steps than the
same model from scratch. Shapes have random colours, so only shape features tell them from the
background: what the first training learned and the second reuses. (bench/accuracy.py --transfer
quotes the same comparison.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from segpipe.config import ModelConfig
from segpipe.data.synthetic import shape_polygon
from segpipe.models import build_model, get_adapter
from segpipe.models.registry import build_model_reported

UNET = {"name": "unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 16, 16]}
KINDS = ("circle", "square", "triangle")
SIZE = (48, 48)
TARGET_IOU = 0.5
MAX_STEPS = 50


def shapes_batch(seed: int, kinds_of: Callable[[int], list[int]], *, binary: bool, n: int = 8) -> dict[str, Any]:
    """n scenes; image i holds the shapes ``kinds_of(i)`` (1 circle, 2 square, 3 triangle) in random colours.
    Label maps: the kind per pixel, or 1 for any shape (`binary`)."""
    rng = np.random.default_rng(seed)
    images, maps = [], []
    for i in range(n):
        image = np.clip(rng.integers(60, 190, size=3) + rng.normal(0, 12, size=(*SIZE, 3)), 0, 255).astype(np.uint8)
        label_map = np.zeros(SIZE, np.int64)
        for kind in kinds_of(i):
            r = rng.uniform(7, 11)
            cx, cy = rng.uniform(r, SIZE[1] - r), rng.uniform(r, SIZE[0] - r)
            pts = np.round(shape_polygon(KINDS[kind - 1], cx, cy, r, rng)).astype(np.int32).reshape(-1, 1, 2)
            mask = np.zeros(SIZE, np.uint8)
            cv2.fillPoly(mask, [pts], 1)
            image[mask > 0] = rng.integers(0, 256, size=3)
            label_map[mask > 0] = 1 if binary else kind
        images.append(torch.from_numpy(image).permute(2, 0, 1).contiguous())
        maps.append(torch.from_numpy(label_map))
    return {"images": torch.stack(images), "label_maps": torch.stack(maps),
            "image_ids": list(range(n)), "meta": [{} for _ in range(n)]}


def train_steps(model: torch.nn.Module, task: str, num_labels: int, batches: list[dict[str, Any]], steps: int,
                check: Callable[[torch.nn.Module, Any], bool] | None = None, lr: float = 3e-3) -> int | None:
    """Train `steps` AdamW steps; the first step (a multiple of 5) at which `check` holds, or None."""
    adapter = get_adapter(task, num_labels=num_labels)
    prepared = [adapter.prepare(b, "cpu") for b in batches]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0)
    for step in range(1, steps + 1):
        model.train()
        loss = sum(adapter.loss(model, prepared[step % len(prepared)]).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if check is not None and step % 5 == 0 and check(model, adapter):
            return step
    return None


def reaches_iou(held_out: dict[str, Any], target: float) -> Callable[[torch.nn.Module, Any], bool]:
    def check(model: torch.nn.Module, adapter: Any) -> bool:
        model.eval()
        batch = adapter.prepare(held_out, "cpu")
        with torch.no_grad():
            pred = adapter.forward_logits(model, batch)[:, 0] > 0
        truth = batch["label_maps"] == 1
        return float((pred & truth).sum() / (pred | truth).sum().clamp(min=1)) >= target

    return check


def steps_to_target(weights: Path | None) -> int | None:
    """Steps a binary "any shape" U-Net needs to reach TARGET_IOU, from `weights` or from scratch."""
    batches = [shapes_batch(seed, lambda i: [3, 1 + i % 2], binary=True) for seed in range(10, 14)]
    check = reaches_iou(shapes_batch(99, lambda i: [3, 1 + i % 2], binary=True), TARGET_IOU)
    torch.manual_seed(1)
    model, report = build_model_reported(ModelConfig(**UNET, weights=weights and str(weights)), "binary", 2)
    if report is not None:
        assert set(report.reinitialised) == {"segmentation_head.0.weight", "segmentation_head.0.bias"}
    return train_steps(model, "binary", 2, batches, MAX_STEPS, check)


def pretrain(path: Path, steps: int = 200) -> Path:
    """A semantic circle/square U-Net saved as a segpipe-style checkpoint."""
    torch.manual_seed(0)
    source = build_model(ModelConfig(**UNET), "semantic", 3)
    batches = [shapes_batch(seed, lambda i: [1 + i % 2, 2 - i % 2], binary=False) for seed in range(6)]
    train_steps(source, "semantic", 3, batches, steps)
    torch.save({"model": source.state_dict()}, path)
    return path


@pytest.mark.slow
def test_fine_tuning_from_other_classes_reaches_the_target_in_fewer_steps(tmp_path: Path) -> None:
    weights = pretrain(tmp_path / "shapes_unet.pt")
    tuned = steps_to_target(weights)
    scratch = steps_to_target(None)
    print(f"steps to IoU {TARGET_IOU}: fine-tuned {tuned}, from scratch {scratch}")
    assert tuned is not None
    assert scratch is None or tuned < scratch
