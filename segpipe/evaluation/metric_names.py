"""The scalar metrics each task's evaluation reports, by name: what a gate or a monitor may compare.

A plain table (no torch, no evaluator imports), so a schedule or a config can be checked where it is
loaded. ``tests/evaluation/test_metric_names.py`` runs every evaluator and adapter and fails if this
table and what they report drift apart.
"""

from __future__ import annotations

import re

_COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]

SCALAR_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "macro_f1", "val_loss", "val_loss_ce"),
    "semantic": ("miou", "mdice", "pixel_accuracy", "val_loss", "val_loss_ce", "val_loss_dice"),
    "binary": ("iou", "dice", "pixel_error", "miou", "mdice", "pixel_accuracy", "val_loss", "val_loss_bce",
               "val_loss_dice"),
    "instance": tuple(f"{kind}_{stat}" for kind in ("segm", "bbox") for stat in _COCO_STATS),
    "detection": tuple(f"bbox_{stat}" for stat in _COCO_STATS),
}
# Reported only under some settings: top-k accuracy needs at least k classes.
_PATTERNS: dict[str, tuple[str, ...]] = {"classification": (r"top\d+_accuracy",)}


def is_metric(task: str, name: str) -> bool:
    """Whether ``task``'s evaluation reports a scalar metric called ``name``."""
    return name in SCALAR_METRICS.get(task, ()) or any(re.fullmatch(p, name) for p in _PATTERNS.get(task, ()))


def known_metrics(task: str) -> list[str]:
    """The names to list when a metric is not one of them."""
    return list(SCALAR_METRICS.get(task, ())) + [p.replace(r"\d+", "K") for p in _PATTERNS.get(task, ())]
