"""The pictures of a finished training run, written to ``run_dir/plots``:

- ``curves.png``: training curves (the task's metrics grouped, losses grouped; `segpipe.masks.charts`);
- ``val_overlays.png``: validation images, ground truth next to prediction, same image side by side;
- ``pr_curves.png`` and ``ap_per_class.png``: where the evaluator measured box/mask AP (it offers
  ``pr_curves()``), precision–recall per class and the per-class AP table;
- ``confusion.png``: where the metrics hold a confusion matrix.

Which pictures exist follows from the data the evaluator and the batches carry, not from the task name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from segpipe.data.augment import letterbox_size
from segpipe.data.categories import CategoryMap
from segpipe.data.sample import Sample
from segpipe.vocabulary import IGNORE_INDEX, RunFiles

CURVES = "curves.png"
VAL_OVERLAYS = "val_overlays.png"
PR_CURVES = "pr_curves.png"
AP_TABLE = "ap_per_class.png"
CONFUSION = "confusion.png"
SHOWN_IMAGES = 6


def draw_curves(run_dir: Path) -> Path | None:
    from segpipe.masks.charts import plot_curves

    log = run_dir / RunFiles.METRICS_LOG
    if not log.is_file():
        return None
    path, _ = plot_curves(log, run_dir / "plots" / CURVES)
    return path


class ValidationShowcase:
    """Keeps the first ``limit`` validation images with their ground truth and prediction
    (pass ``keep`` as ``evaluate``'s ``on_batch``), then draws them in pairs."""

    def __init__(self, limit: int = SHOWN_IMAGES) -> None:
        self.limit = limit
        self.items: list[tuple[np.ndarray, Any, Sample]] = []

    def keep(self, predictions: list[Any], batch: dict[str, Any]) -> None:
        for i, (image, pred, meta) in enumerate(zip(batch["images"], predictions, batch["meta"], strict=True)):
            if len(self.items) >= self.limit:
                return
            whole = image.permute(1, 2, 0).numpy()
            self.items.append(_image_region(whole, pred, ground_truth(batch, i, whole), meta))

    def draw(self, category_map: CategoryMap, path: Path, score_threshold: float) -> Path | None:
        from segpipe.masks import render

        if not self.items:
            return None
        pairs: list[tuple[np.ndarray, Any]] = []
        captions: list[str] = []
        for image, pred, truth in self.items:
            pairs += [(image, truth), (image, pred)]
            captions += [f"image {pred.image_id}: ground truth", f"image {pred.image_id}: prediction"]
        return render.overlay_grid(pairs, category_map, path, cols=4, score_threshold=score_threshold,
                                   captions=captions)


def ground_truth(batch: dict[str, Any], i: int, image: np.ndarray) -> Sample:
    """The i-th item's annotation as a `Sample` over ``image`` (H×W×3 uint8), from whichever target the
    batch carries: ``targets`` (instances), ``label_maps`` (dense labels) or ``class_ids``."""
    image = np.ascontiguousarray(image)
    image_id = batch["image_ids"][i]
    if "targets" in batch:
        t = batch["targets"][i]
        labels = t["labels"].numpy().astype(np.int64)
        masks = t["masks"].numpy().astype(np.uint8) if "masks" in t else np.zeros((0, *image.shape[:2]), np.uint8)
        return Sample(image=image, image_id=image_id, masks=masks, labels=labels,
                      boxes=t["boxes"].numpy().astype(np.float32).reshape(-1, 4))
    if "label_maps" in batch:
        label_map = batch["label_maps"][i].numpy()
        label_map = np.where((label_map >= 0) & (label_map <= 255), label_map, IGNORE_INDEX).astype(np.uint8)
        return Sample(image=image, image_id=image_id, label_map=label_map)
    if "class_ids" in batch:
        return Sample(image=image, image_id=image_id, class_id=int(batch["class_ids"][i]))
    return Sample(image=image, image_id=image_id)


def _image_region(image: np.ndarray, pred: Any, truth: Sample, meta: dict[str, Any]) -> tuple[np.ndarray, Any, Sample]:
    """A letterboxed (S×S, padded bottom/right) input, its label maps cut to the part that holds the
    image. The padding is ignored in training, so what the model says there is noise that an overlay
    would show as a large bogus region."""
    size = meta.get("orig_size")
    s = image.shape[0]
    if pred.label_map is None or size is None or image.shape[1] != s:
        return image, pred, truth
    hh, ww = letterbox_size(int(size[0]), int(size[1]), s)
    if (hh, ww) == (s, s):
        return image, pred, truth
    region = dataclasses.replace(pred, label_map=np.ascontiguousarray(pred.label_map[:hh, :ww]), height=hh, width=ww)
    cut = np.ascontiguousarray(image[:hh, :ww])
    truth_map = None if truth.label_map is None else np.ascontiguousarray(truth.label_map[:hh, :ww])
    return cut, region, Sample(image=cut, image_id=truth.image_id, label_map=truth_map)


def draw_evaluation(evaluator: Any, metrics: dict[str, Any], plots: Path) -> list[Path]:
    """Pictures of what the evaluator measured: PR curves and the AP table, a confusion matrix."""
    from segpipe.masks import charts, render

    written: list[Path] = []
    curves = evaluator.pr_curves() if hasattr(evaluator, "pr_curves") else None
    if curves is not None:
        written.append(charts.plot_pr_curves(curves, plots / PR_CURVES))
        written.append(charts.plot_ap_table(curves, plots / AP_TABLE))
    if "confusion_matrix" in metrics:
        written.append(render.plot_confusion_matrix(np.array(metrics["confusion_matrix"]), metrics["class_names"],
                                                    plots / CONFUSION))
    return written
