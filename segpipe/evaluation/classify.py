"""Classification metrics: accuracy, top-5 accuracy, per-class precision / recall / F1, macro F1.

Everything but top-k comes from one K×K confusion matrix (rows = true class, columns = predicted).
Per class c: precision = TP / predicted-as-c, recall = TP / truly-c, F1 = 2PR / (P + R).

Absent classes follow scikit-learn's ``average="macro"`` defaults: a class that is neither in the
targets nor among the predictions is left out (its per-class entries are None); for a class that is
in one of them, a 0 / 0 precision or recall counts as 0. ``macro_f1`` is the mean F1 over those
classes. Nothing is NaN, so results go into JSON unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from segpipe.data.categories import CategoryMap
from segpipe.data.sample import Sample
from segpipe.errors import DataError
from segpipe.evaluation.semantic import as_numpy, confusion_matrix
from segpipe.prediction import Prediction


class ClassificationEvaluator:
    """``process(predictions, targets)``: ``predictions`` a list of Predictions with ``class_id`` (and
    ``scores``, K probabilities, for top-k), ``targets`` the matching list of Samples (their
    ``class_id``) or the true class indices 0..K-1 as a list, array or the batch's ``class_ids`` tensor.

    ``result()`` keys: ``accuracy``; ``top5_accuracy`` when K ≥ 5 and every prediction had scores;
    ``precision_per_class``, ``recall_per_class``, ``f1_per_class``, ``macro_f1``; ``confusion_matrix``
    (K×K nested list); ``class_names``; ``num_samples``.
    """

    primary_metric = "accuracy"

    def __init__(self, category_map: CategoryMap, topk: int = 5) -> None:
        self.num_classes = category_map.num_labels
        self.class_names = category_map.label_names
        self.topk = topk
        self.reset()

    def reset(self) -> None:
        self.cm = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.num_samples = 0
        self.topk_hits = 0
        self.scored = 0

    def process(self, predictions: Sequence[Prediction], targets: Any) -> None:
        truths = _true_classes(targets)
        if len(truths) != len(predictions):
            raise ValueError(f"{len(predictions)} predictions but {len(truths)} targets")
        predicted = np.array([_predicted_class(p) for p in predictions], dtype=np.int64)
        try:
            self.cm += confusion_matrix(truths, predicted, self.num_classes)
        except ValueError as e:
            ids = ", ".join(str(p.image_id) for p in predictions)
            raise DataError(f"images {ids}: {e}") from None
        self.num_samples += len(predictions)
        for pred, truth in zip(predictions, truths, strict=False):
            if pred.scores is None:
                continue
            scores = as_numpy(pred.scores).reshape(-1)
            if scores.size != self.num_classes:
                raise ValueError(f"image {pred.image_id}: {scores.size} scores for {self.num_classes} classes")
            self.scored += 1
            # stable sort on -score: ties rank the lower class index first, as torch.topk does on CPU
            top = np.argsort(-scores, kind="stable")[: self.topk]
            self.topk_hits += int(truth in top)

    def result(self) -> dict[str, Any]:
        cm = self.cm
        tp = np.diag(cm).astype(np.float64)
        predicted = cm.sum(axis=0)
        actual = cm.sum(axis=1)
        precision: list[float | None] = []
        recall: list[float | None] = []
        f1: list[float | None] = []
        for c in range(self.num_classes):
            if predicted[c] == 0 and actual[c] == 0:
                for values in (precision, recall, f1):
                    values.append(None)
                continue
            p = tp[c] / predicted[c] if predicted[c] else 0.0
            r = tp[c] / actual[c] if actual[c] else 0.0
            precision.append(float(p))
            recall.append(float(r))
            f1.append(float(2 * p * r / (p + r)) if p + r > 0 else 0.0)
        present = [v for v in f1 if v is not None]
        out: dict[str, Any] = {
            "accuracy": float(tp.sum() / self.num_samples) if self.num_samples else 0.0,
        }
        if self.num_classes >= self.topk and self.scored and self.scored == self.num_samples:
            out[f"top{self.topk}_accuracy"] = self.topk_hits / self.scored
        out.update(
            {
                "precision_per_class": precision,
                "recall_per_class": recall,
                "f1_per_class": f1,
                "macro_f1": float(np.mean(present)) if present else 0.0,
                "confusion_matrix": cm.tolist(),
                "class_names": list(self.class_names),
                "num_samples": self.num_samples,
            }
        )
        return out


def _predicted_class(pred: Prediction) -> int:
    if pred.class_id is not None:
        return int(pred.class_id)
    if pred.scores is not None:
        return int(np.argmax(as_numpy(pred.scores)))
    raise ValueError(f"image {pred.image_id}: prediction has neither class_id nor scores")


def _true_classes(targets: Any) -> np.ndarray:
    if isinstance(targets, Sequence) and targets and isinstance(targets[0], Sample):
        values = []
        for sample in targets:
            if sample.class_id is None:
                raise DataError(f"image {sample.image_id}: sample has no class_id to evaluate against")
            values.append(int(sample.class_id))
        return np.array(values, dtype=np.int64)
    return as_numpy(targets).astype(np.int64).reshape(-1)
