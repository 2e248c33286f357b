"""One pass of a model over a loader: validation loss (where the task has one in eval mode) and the
task's metrics from its evaluator. Knows no task: the adapter and the evaluator do."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from segpipe.engine.train import autocast
from segpipe.evaluation import Evaluator
from segpipe.models.adapter import TaskAdapter
from segpipe.prediction import Prediction


@torch.no_grad()
def evaluate(
    model: nn.Module,
    adapter: TaskAdapter,
    loader: Iterable[dict[str, Any]],
    evaluator: Evaluator,
    device: torch.device,
    amp: str = "auto",
    on_batch: Callable[[list[Prediction], dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Metrics over the whole loader; ``val_loss`` (and its parts) is included for tasks whose loss is
    defined in eval mode. ``on_batch(predictions, batch)`` sees every batch (e.g. to keep overlays)."""
    model.eval()
    evaluator.reset()
    sums: dict[str, float] = {}
    batches = 0
    for raw in loader:
        batch = adapter.prepare(raw, device)
        with autocast(device, amp):
            losses, predictions = adapter.eval_step(model, batch)
        if losses:
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            sums["loss"] = sums.get("loss", 0.0) + float(sum(losses.values()))
        batches += 1
        evaluator.process(predictions, adapter.eval_targets(raw))
        if on_batch is not None:
            on_batch(predictions, raw)
    metrics = evaluator.result()
    metrics.update({f"val_{k}": v / max(batches, 1) for k, v in sums.items()})
    return metrics
