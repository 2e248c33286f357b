"""Charts of a run: training curves grouped the way engineers read them, and what an evaluator saw
(precision–recall curves and a per-class AP table for box/mask AP).

Pure: records / arrays in, PNG files out (matplotlib's object API on the Agg canvas, no pyplot).

Training curves come from ``metrics.jsonl`` (see `segpipe.engine.hooks.MetricsLogHook`) as panels:

- the task's metrics first, grouped by family: box and mask AP (``segm_AP``, ``segm_AP50``,
  ``segm_AP75`` in one panel, AP by object size in another), mIoU / Dice, pixel accuracy, accuracy;
- losses grouped: the training loss and its parts per step in one panel, validation losses in another;
- the learning rate.

A series whose values are all "undefined" (COCOeval's -1, e.g. ``bbox_APl`` when no object is large),
NaN or missing is left out, and a panel left with no series is not drawn.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segpipe.masks.render import _save_figure, read_metric_records

Series = tuple[list[float], list[float]]

# (title, pattern of the metric keys it holds), in the order the panels are drawn
_METRIC_GROUPS: tuple[tuple[str, str], ...] = (
    ("mask AP (segm)", r"segm_AP(50|75)?"),
    ("box AP (bbox)", r"bbox_AP(50|75)?"),
    ("mask AP by object size", r"segm_AP[sml]"),
    ("box AP by object size", r"bbox_AP[sml]"),
    ("mIoU / Dice", r"m?iou|m?dice"),
    ("pixel accuracy", r"pixel_accuracy|pixel_error"),
    ("accuracy", r"(top\d+_)?accuracy|macro_f1|balanced_accuracy"),
)
_NOT_CURVES = {"epoch", "step", "split", "global_step", "time", "timestamp"}


@dataclass
class Panel:
    title: str
    xlabel: str
    series: dict[str, Series] = field(default_factory=dict)
    log_y: bool = False


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _defined(ys: Sequence[float]) -> bool:
    """False when every value is COCOeval's "undefined" -1 (or there are none)."""
    return any(y != -1 for y in ys)


def _collect(records: list[dict[str, Any]], split: str, x_key: str) -> dict[str, Series]:
    out: dict[str, Series] = {}
    for i, r in enumerate(records):
        if r.get("split") != split:
            continue
        x = r.get(x_key, i)
        if not _number(x):
            continue
        for key, value in r.items():
            if key in _NOT_CURVES or key.startswith("num_") or not _number(value):  # counts are no curves
                continue
            xs, ys = out.setdefault(key, ([], []))
            xs.append(float(x))
            ys.append(float(value))
    return {k: v for k, v in out.items() if _defined(v[1])}


def curve_panels(records: list[dict[str, Any]]) -> list[Panel]:
    """The panels of the training-curves picture (see the module docstring), none of them empty."""
    val = _collect(records, "val", "epoch")
    train_steps = _collect(records, "train", "step")
    train_epochs = _collect(records, "train_epoch", "step")
    panels: list[Panel] = []
    metric_keys = [k for k in val if not k.startswith("val_")]
    used: set[str] = set()
    for title, pattern in _METRIC_GROUPS:
        keys = [k for k in metric_keys if re.fullmatch(pattern, k) and k not in used]
        if keys:
            used.update(keys)
            panels.append(Panel(title, "epoch", {k: val[k] for k in keys}))
    rest = [k for k in metric_keys if k not in used]
    if rest:
        panels.append(Panel("other metrics", "epoch", {k: val[k] for k in rest}))
    losses = {k: v for k, v in train_steps.items() if k.startswith("loss")}
    if "loss" in train_epochs:
        losses["loss (epoch mean)"] = train_epochs["loss"]
    if losses:
        panels.append(Panel("training loss", "step", dict(sorted(losses.items(), key=lambda kv: kv[0] != "loss"))))
    val_losses = {k: v for k, v in val.items() if k.startswith("val_")}
    if val_losses:
        panels.append(Panel("validation loss", "epoch", val_losses))
    if "lr" in train_steps:
        panels.append(Panel("learning rate", "step", {"lr": train_steps["lr"]}))
    return panels


def plot_curves(metrics_jsonl_path: str | Path, out_png: str | Path) -> tuple[Path, list[Panel]]:
    """Training curves from a metrics JSONL log; returns the picture and the panels it shows."""
    from matplotlib.figure import Figure

    panels = curve_panels(read_metric_records(metrics_jsonl_path))
    cols = min(3, max(len(panels), 1))
    rows = max(math.ceil(len(panels) / cols), 1)
    fig = Figure(figsize=(4.4 * cols, 3.2 * rows), dpi=100, layout="constrained")
    if not panels:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no metrics recorded yet", ha="center", va="center", fontsize=12)
        ax.set_axis_off()
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        for name, (xs, ys) in panel.series.items():
            main = name in ("loss", "lr") or len(panel.series) == 1
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=name,
                    linewidth=2.0 if main else 1.2)
        ax.set_title(panel.title)
        ax.set_xlabel(panel.xlabel)
        ax.grid(alpha=0.3)
        if panel.title == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.legend(fontsize=7)
    return _save_figure(fig, out_png), panels


# ------------------------------------------------------------------------------------ box / mask AP


@dataclass
class PrCurves:
    """Per iou type ("bbox"/"segm") and class name: precision at COCO's 101 recall points, at IoU 0.5
    and averaged over IoU 0.5:0.95 (area all, 100 detections). Values are -1 where undefined."""

    recall: np.ndarray
    precision50: dict[str, dict[str, np.ndarray]]
    precision: dict[str, dict[str, np.ndarray]]
    gt_counts: dict[str, int]

    def ap(self, iou_type: str, name: str, at50: bool = False) -> float:
        p = (self.precision50 if at50 else self.precision)[iou_type][name]
        p = p[p > -1]
        return float(p.mean()) if p.size else -1.0


def plot_pr_curves(curves: PrCurves, out_png: str | Path) -> Path:
    """One panel per iou type: a precision–recall curve per class at IoU 0.5, labelled with its AP50."""
    from matplotlib.figure import Figure

    types = list(curves.precision50)
    fig = Figure(figsize=(5.0 * len(types), 4.2), dpi=100, layout="constrained")
    for i, iou_type in enumerate(types):
        ax = fig.add_subplot(1, len(types), i + 1)
        for name, p in curves.precision50[iou_type].items():
            if not (p > -1).any():
                continue  # no ground truth of this class in the validation images
            ax.plot(curves.recall, np.where(p > -1, p, np.nan), label=f"{name} AP50 {curves.ap(iou_type, name, True):.3f}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"{'mask' if iou_type == 'segm' else 'box'} precision–recall, IoU 0.5")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    return _save_figure(fig, out_png)


def ap_table_rows(curves: PrCurves) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-class AP table (``-`` where undefined)."""
    types = list(curves.precision)
    header = ["class", "val instances"] + [f"{t} {m}" for t in types for m in ("AP", "AP50")]
    rows = []
    for name, count in curves.gt_counts.items():
        row = [name, str(count)]
        for t in types:
            for at50 in (False, True):
                v = curves.ap(t, name, at50)
                row.append("-" if v < 0 else f"{v:.3f}")
        rows.append(row)
    return header, rows


def plot_ap_table(curves: PrCurves, out_png: str | Path) -> Path:
    """The per-class AP table as a picture (class, its validation instances, AP and AP50 per type)."""
    from matplotlib.figure import Figure

    header, rows = ap_table_rows(curves)
    fig = Figure(figsize=(1.6 * len(header) + 1, 0.42 * (len(rows) + 2) + 0.6), dpi=100, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    ax.set_title("per-class AP (validation, IoU 0.5:0.95 and 0.5)")
    table = ax.table(cellText=rows or [["(no classes)"] + [""] * (len(header) - 1)], colLabels=header, loc="center",
                     cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1, 1.3)
    for (r, _), cell in table.get_celld().items():
        if r == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#e8e8f0")
    return _save_figure(fig, out_png)
