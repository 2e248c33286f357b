"""Inference helpers the dense adapters (classification, semantic, binary) share: batches from images
through the evaluation transform, test-time augmentation, and sliding windows.

- **Test-time augmentation** (``predict.tta``): the logits of the 8 dihedral views of the input (the
  identity, horizontal flip, and the 90°/180°/270° rotations of both), each mapped back, averaged.
  The U-Net paper averages rotated inputs the same way; segmentation only.
- **Sliding windows** (``predict.tile_size``): windows at native resolution whose overlapping logits
  are averaged. ``tile_border: mirror`` is the U-Net paper's overlap-tile strategy: the image is first
  extended by mirroring by half the overlap on every side, each pixel is taken from the window in whose
  centre part it lies (so it is predicted with context all round, at the image border too), and the
  margin is cropped off again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from segpipe.data.sample import ImageId, Sample

Forward = Callable[[torch.Tensor], torch.Tensor]  # uint8 B×3×h×w → float B×K×h×w logits


def transformed_batch(transform: Any, images: list[np.ndarray], image_ids: list[ImageId]) -> dict[str, Any]:
    """Images through `transform` (letterbox / resize), stacked as a uint8 B×3×S×S batch."""
    arrays = [transform(Sample(image=im, image_id=iid)).image for im, iid in zip(images, image_ids, strict=True)]
    # NHWC memory seen as NCHW, i.e. channels_last: CPU convolutions run faster on it than on a copy
    tensor = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return {"images": tensor, "image_ids": list(image_ids), "meta": [{} for _ in images]}


def dihedral_average(forward: Forward, images: torch.Tensor) -> torch.Tensor:
    """Mean logits of the 8 flips/rotations of `images` (B×3×H×W), each view's logits turned back."""
    total: torch.Tensor | None = None
    for flip in (False, True):
        view = images.flip(-1) if flip else images
        for k in range(4):
            logits = forward(torch.rot90(view, k, dims=(-2, -1)).contiguous()).float()
            logits = torch.rot90(logits, -k, dims=(-2, -1))
            logits = logits.flip(-1) if flip else logits
            total = logits if total is None else total + logits
    assert total is not None
    return total / 8


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of windows of size `tile` covering 0..length, the last flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def tiled_logits(forward: Forward, image: np.ndarray | torch.Tensor, tile: int, overlap: float, batch_size: int,
                 border: str = "zero") -> torch.Tensor:
    """1×K×H×W logits of one image — H×W×3 uint8 array, or a C×H×W tensor (e.g. already normalised) —
    from overlapping `tile`×`tile` windows (see the module doc). `forward` gets B×C×tile×tile windows of
    the image's own dtype."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1) if isinstance(image, np.ndarray) else image
    stride = max(1, round(tile * (1 - overlap)))
    h, w = x.shape[-2:]
    margin = (tile - stride) // 2 if border == "mirror" else 0
    if margin:
        # reflect padding needs floats; uint8 values survive the round trip exactly
        x = F.pad(x[None].float(), (margin,) * 4, mode="reflect")[0].to(x.dtype)
    ih, iw = x.shape[-2:]
    if ih < tile or iw < tile:  # images smaller than a tile: pad (zeros) at the bottom/right
        x = F.pad(x, (0, max(0, tile - iw), 0, max(0, tile - ih)))
    ph, pw = x.shape[-2:]
    windows = [(y, xx) for y in tile_origins(ph, tile, stride) for xx in tile_origins(pw, tile, stride)]
    # mirror: each pixel is taken from the window where it lies in the centre part (whose whole context
    # is inside the window); window edges weigh almost nothing. zero: overlapping windows count equally.
    core = torch.ones((tile, tile))
    if margin:
        core.fill_(1e-6)
        core[margin : tile - margin, margin : tile - margin] = 1.0
    total: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    for chunk in _chunks(windows, batch_size):
        logits = forward(torch.stack([x[:, y : y + tile, xx : xx + tile] for y, xx in chunk])).float()
        if total is None:
            total = torch.zeros((1, logits.shape[1], ph, pw), device=logits.device)
            weight = torch.zeros((1, 1, ph, pw), device=logits.device)
        assert weight is not None
        core = core.to(logits.device)
        for (y, xx), out in zip(chunk, logits, strict=True):
            total[0, :, y : y + tile, xx : xx + tile] += out * core
            weight[0, :, y : y + tile, xx : xx + tile] += core
    assert total is not None and weight is not None  # there is always at least one window
    return (total / weight)[:, :, margin : margin + h, margin : margin + w]


def _chunks(seq: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
