"""Per-image uncertainty: how little a model trusts its own answer, in [0, 1] (1 = no idea).

One measure per kind of output, each chosen so that "most uncertain first" is a good order for
"what to label next":

- class probabilities: the margin rule, ``1 - (p₁ - p₂)`` with p₁ ≥ p₂ the two largest probabilities
  (an even split between two classes is the most informative image, whatever K is);
- dense probabilities (semantic, binary): the mean pixel entropy, divided by its maximum ``log K``;
- detector scores (instance, detection): the largest binary entropy of the instance scores, divided by
  ``log 2`` — an image is as uncertain as its least sure object. With no instance at all the model saw
  nothing it could doubt, which is 0.

Adapters call these while decoding, where the probabilities still exist; the number travels as
``Prediction.uncertainty`` into the store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def margin_uncertainty(probs: torch.Tensor) -> torch.Tensor:
    """``(B, K)`` probabilities (K ≥ 2) → ``(B,)`` uncertainties ``1 - (p₁ - p₂)``."""
    top = probs.float().topk(2, dim=1).values
    return (1.0 - (top[:, 0] - top[:, 1])).clamp(0.0, 1.0)


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``(B, K, H, W)`` logits (K ≥ 2) → ``(B,)`` mean pixel entropy of the softmax, over ``log K``."""
    logp = logits.float().log_softmax(dim=1)
    entropy = -(logp.exp() * logp).sum(dim=1)
    return (entropy.flatten(1).mean(dim=1) / math.log(logits.shape[1])).clamp(0.0, 1.0)


def sigmoid_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` or ``(B, H, W)`` logits of one foreground channel → ``(B,)`` mean binary
    entropy over ``log 2``."""
    x = logits.float().flatten(1)
    return (_binary_entropy_from_logits(x).mean(dim=1) / math.log(2.0)).clamp(0.0, 1.0)


def score_entropy(scores: Sequence[float]) -> float:
    """Detector instance scores of one image → the largest binary entropy over ``log 2`` (0 if none)."""
    if len(scores) == 0:
        return 0.0
    p = torch.as_tensor(list(scores), dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    entropy = -(p * p.log() + (1 - p) * (1 - p).log()) / math.log(2.0)
    return float(entropy.max().clamp(0.0, 1.0))


def _binary_entropy_from_logits(x: torch.Tensor) -> torch.Tensor:
    """H(sigmoid(x)) computed stably from the logit: softplus(x) - x·sigmoid(x)."""
    return torch.nn.functional.softplus(x) - x * torch.sigmoid(x)
