"""The pictures of every run directory, per task kind: the training curves show the task's metrics
(and no panel of undefined values), validation predictions stand next to their ground truth, box/mask
AP runs get precision–recall curves and a per-class AP table; and TensorBoard gets the same scalars
and pictures (read back with tensorboard's own event reader)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from segpipe.data.images import read_image
from segpipe.masks.charts import curve_panels
from segpipe.masks.render import read_metric_records
from tests.engine.runs import Run


def _val_records(run: Run) -> list[dict]:
    return [r for r in read_metric_records(run.dir / "metrics.jsonl") if r["split"] == "val"]


def check_pictures(run: Run, task_metrics: set[str], pictures: set[str], monitor: str) -> None:
    plots = run.dir / "plots"
    assert {p.name for p in plots.glob("*.png")} == pictures
    for name in pictures:
        assert read_image(plots / name).shape[0] > 100, name

    panels = curve_panels(read_metric_records(run.dir / "metrics.jsonl"))
    shown = {key for panel in panels for key in panel.series}
    assert task_metrics <= shown, (task_metrics, shown)
    for panel in panels:
        assert panel.series, panel.title
        for key, (xs, ys) in panel.series.items():
            assert len(xs) == len(ys) > 0 and all(math.isfinite(y) for y in ys)
            assert any(y != -1 for y in ys), f"{panel.title}: {key} is undefined (-1) throughout"
    # every metric the run measured with a defined value is drawn, and only those
    val = _val_records(run)
    defined = {k for r in val for k, v in r.items()
               if k not in ("epoch", "step", "split") and not k.startswith("num_") and isinstance(v, float) and v != -1}
    assert {k for k in shown if not k.startswith(("loss", "lr"))} == defined
    # losses are grouped: the training loss and all its parts share one panel
    train_panel = next(p for p in panels if p.title == "training loss")
    assert "loss" in train_panel.series and all(k.startswith("loss") for k in train_panel.series)

    # validation pictures: ground truth and prediction of the same image side by side
    # (every run here has ≥ 2 validation images: a row holds two pairs of 256-px cells)
    sheet = read_image(plots / "val_overlays.png")
    assert sheet.shape[1] == 4 * 256

    events = EventAccumulator(str(run.dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    per_epoch = events.Scalars(f"val/{monitor}")
    assert [e.value for e in per_epoch] == pytest.approx([r[monitor] for r in val], abs=1e-6)  # stored as float32
    assert "train/loss" in tags["scalars"] and "train/lr" in tags["scalars"]
    assert f"final/{monitor}" in tags["scalars"]
    assert {f"plots/{Path(p).stem}" for p in pictures} <= set(tags["images"])


def test_classification_pictures(classification_run: Run) -> None:
    check_pictures(classification_run, {"accuracy"}, {"curves.png", "val_overlays.png", "confusion.png"}, "accuracy")


def test_semantic_pictures(semantic_run: Run) -> None:
    check_pictures(semantic_run, {"miou", "mdice"}, {"curves.png", "val_overlays.png", "confusion.png"}, "miou")


def test_binary_pictures(binary_run: Run) -> None:
    check_pictures(binary_run, {"iou", "dice"}, {"curves.png", "val_overlays.png", "confusion.png"}, "iou")


@pytest.mark.slow
def test_instance_pictures(instance_run: Run) -> None:
    check_pictures(instance_run, {"segm_AP", "segm_AP50", "bbox_AP", "bbox_AP50"},
                   {"curves.png", "val_overlays.png", "pr_curves.png", "ap_per_class.png"}, "segm_AP")
    # 64-px images hold no large object: bbox_APl / segm_APl are -1 in every epoch and left out
    val = _val_records(instance_run)
    assert all(r["segm_APl"] == -1 for r in val)
    shown = {k for p in curve_panels(read_metric_records(instance_run.dir / "metrics.jsonl")) for k in p.series}
    assert "segm_APl" not in shown and "bbox_APl" not in shown
