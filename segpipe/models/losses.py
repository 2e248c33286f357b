"""Dense losses that skip ignored pixels: cross-entropy / BCE plus soft Dice.

All functions take logits (not probabilities), compute in float32 (safe under autocast) and return a
scalar tensor that is finite even when every pixel of the batch is ignored (then it is 0, with a
gradient path to the logits so backward still works).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-6


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """logits B×C×H×W, target B×H×W int64 (0..C-1 or ignore_index): mean CE over the kept pixels."""
    logits = logits.float()
    valid = target != ignore_index
    total = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    return total / valid.sum().clamp(min=1)


def multiclass_dice(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """1 − mean soft Dice over the classes present in `target` (ignored pixels excluded).

    Dice is accumulated over the whole batch per class; a class absent from the batch has no Dice to
    score, so it is left out of the mean instead of rewarding or punishing empty predictions.
    """
    probs = logits.float().softmax(dim=1)
    valid = (target != ignore_index).unsqueeze(1).to(probs.dtype)
    clean = torch.where(target == ignore_index, torch.zeros_like(target), target)
    onehot = F.one_hot(clean, probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype) * valid
    probs = probs * valid
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    card = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + _EPS) / (card + _EPS)
    present = (onehot.sum(dims) > 0).to(probs.dtype)
    return ((1 - dice) * present).sum() / present.sum().clamp(min=1)


def masked_bce(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """logits B×H×W, target B×H×W (0, 1 or ignore_index): mean BCE-with-logits over the kept pixels."""
    logits = logits.float()
    valid = (target != ignore_index).to(logits.dtype)
    per_pixel = F.binary_cross_entropy_with_logits(logits, (target == 1).to(logits.dtype), reduction="none")
    return (per_pixel * valid).sum() / valid.sum().clamp(min=1)


def binary_dice(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """1 − soft Dice of the foreground over the batch; 0 when the batch has no foreground pixel."""
    valid = (target != ignore_index).to(torch.float32)
    probs = logits.float().sigmoid() * valid
    fg = (target == 1).to(torch.float32)
    inter = (probs * fg).sum()
    card = probs.sum() + fg.sum()
    dice = (2 * inter + _EPS) / (card + _EPS)
    has_fg = (fg.sum() > 0).to(torch.float32)
    return (1 - dice) * has_fg
