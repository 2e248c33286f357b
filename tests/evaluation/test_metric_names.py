"""The metric-name table matches what each task's evaluation really reports (evaluator + val losses)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segpipe.data.categories import CategoryMap
from segpipe.data.synthetic import make_shapes_coco
from segpipe.evaluation import make_evaluator
from segpipe.evaluation.coco import STAT_NAMES
from segpipe.evaluation.metric_names import SCALAR_METRICS, is_metric, known_metrics
from segpipe.models.tasks import get_adapter
from segpipe.prediction import Prediction


def _scalars(metrics: dict) -> set[str]:
    return {k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and not k.startswith("num_")}


def _val_losses(task: str, num_labels: int, logits: torch.Tensor, target: torch.Tensor) -> set[str]:
    losses = get_adapter(task, num_labels=num_labels).loss_from_logits(logits, target)
    return {"val_loss"} | {f"val_{k}" for k in losses}


def test_classification() -> None:
    cmap = CategoryMap((1, 2, 3), ("a", "b", "c"), offset=0)
    evaluator = make_evaluator("classification", cmap)
    evaluator.process([Prediction(1, "classification", 8, 8, class_id=0, scores=np.array([0.8, 0.1, 0.1]))],
                      torch.tensor([0]))
    reported = _scalars(evaluator.result()) | _val_losses("classification", 3, torch.zeros(1, 3), torch.tensor([0]))
    assert reported - {"top5_accuracy"} == set(SCALAR_METRICS["classification"])
    assert is_metric("classification", "top3_accuracy") and not is_metric("classification", "top_accuracy")


@pytest.mark.parametrize("task,labels", [("semantic", 3), ("binary", 2)])
def test_dense(task: str, labels: int) -> None:
    cmap = CategoryMap((1, 2), ("a", "b")) if task == "semantic" else CategoryMap((1,), ("a",))
    evaluator = make_evaluator(task, cmap)
    label_map = np.zeros((4, 4), np.uint8)
    evaluator.process([Prediction(1, task, 4, 4, label_map=label_map)], torch.zeros(1, 4, 4, dtype=torch.long))
    channels = labels if task == "semantic" else 1
    losses = _val_losses(task, labels, torch.zeros(1, channels, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    assert _scalars(evaluator.result()) | losses == set(SCALAR_METRICS[task])


@pytest.mark.parametrize("task,iou_types", [("instance", ("segm", "bbox")), ("detection", ("bbox",))])
def test_coco_tasks(tmp_path, task: str, iou_types: tuple[str, ...]) -> None:
    coco = make_shapes_coco(tmp_path, n_images=1, size=(32, 32), seed=0)
    evaluator = make_evaluator(task, CategoryMap((3, 7, 12), ("a", "b", "c")), coco_gt=coco.annotations)
    assert sorted(evaluator.iou_types) == sorted(iou_types)  # type: ignore[attr-defined]
    assert set(SCALAR_METRICS[task]) == {f"{t}_{s}" for t in iou_types for s in STAT_NAMES}


def test_known_metrics_reads_well() -> None:
    assert "topK_accuracy" in known_metrics("classification")
    assert known_metrics("nope") == []
