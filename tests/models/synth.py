"""Tiny synthetic batches in exactly the batch format of segpipe/data/dataset.py (see models/adapter.py).

Scenes are noisy backgrounds with filled shapes (circle = label 1, square = 2, triangle = 3), drawn from
the same polygons the masks come from, so a model can learn them.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from segpipe.data.synthetic import shape_polygon

KINDS = ("circle", "square", "triangle")
COLOURS = ((220, 60, 60), (60, 200, 60), (70, 90, 230))


def scene(
    rng: np.random.Generator, size: tuple[int, int], labels: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """An H×W×3 uint8 image and N×H×W uint8 masks, one shape per entry of `labels` (1-based)."""
    h, w = size
    image = np.clip(rng.integers(90, 170, size=3) + rng.normal(0, 10, size=(h, w, 3)), 0, 255).astype(
        np.uint8
    )
    masks = np.zeros((len(labels), h, w), np.uint8)
    r_max = min(h, w) / 4
    for i, label in enumerate(labels):
        r = rng.uniform(r_max * 0.6, r_max)
        cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        pts = np.round(shape_polygon(KINDS[label - 1], cx, cy, r, rng)).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(masks[i], [pts], 1)
        image[masks[i] > 0] = COLOURS[label - 1]
    return image, masks


def boxes_of(masks: np.ndarray) -> np.ndarray:
    """N×4 float32 xyxy boxes (x2, y2 exclusive) of N×H×W masks."""
    out = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        out[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return out


def make_batch(
    task: str, num_labels: int, *, n: int = 2, size: tuple[int, int] = (64, 64), seed: int = 0
) -> dict[str, Any]:
    """A batch for `task` with `num_labels` labels (CategoryMap.num_labels), `n` images of `size`."""
    rng = np.random.default_rng(seed)
    images, class_ids, label_maps, targets = [], [], [], []
    for i in range(n):
        if task == "classification":
            cls = i % num_labels
            image, _ = scene(rng, size, [cls % len(KINDS) + 1])
            class_ids.append(cls)
        else:
            k = num_labels - 1  # categories besides background
            labels = [(i + j) % k + 1 for j in range(2)]
            image, masks = scene(rng, size, labels)
            label_map = np.zeros(size, np.uint8)
            for label, m in zip(labels, masks, strict=True):
                label_map[m > 0] = label
            label_map[:2, :] = 255  # an ignored strip, as crowd regions or padding would be
            label_maps.append(label_map)
            targets.append(
                {
                    "boxes": torch.from_numpy(boxes_of(masks)),
                    "labels": torch.tensor(labels, dtype=torch.int64),
                    "masks": torch.from_numpy(masks),
                }
            )
        images.append(torch.from_numpy(image).permute(2, 0, 1).contiguous())
    batch: dict[str, Any] = {
        "image_ids": list(range(100, 100 + n)),
        "meta": [{"file": f"{i}.png"} for i in range(n)],
    }
    if task in ("instance", "detection"):
        batch["images"] = images
        batch["targets"] = (
            targets if task == "instance" else [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
        )
    else:
        batch["images"] = torch.stack(images)
        if task == "classification":
            batch["class_ids"] = torch.tensor(class_ids, dtype=torch.int64)
        else:
            maps = torch.from_numpy(np.stack(label_maps)).long()
            batch["label_maps"] = maps
    return batch


def binary_batch(**kw: Any) -> dict[str, Any]:
    """Binary task batch: every shape is foreground (1), ignore stays 255."""
    batch = make_batch("semantic", 3, **kw)
    maps = batch["label_maps"]
    batch["label_maps"] = torch.where((maps > 0) & (maps != 255), torch.ones_like(maps), maps)
    return batch


def batch_for(task: str, num_labels: int, **kw: Any) -> dict[str, Any]:
    return binary_batch(**kw) if task == "binary" else make_batch(task, num_labels, **kw)
