"""Segmentation evaluation at native resolution with mirrored-border sliding windows, and with
test-time augmentation, through evaluate_checkpoint (what `segpipe evaluate` and the retraining gate run)."""

from __future__ import annotations

from segpipe.config import PredictConfig
from segpipe.engine.runner import evaluate_checkpoint
from tests.engine.runs import Run


def test_tiled_and_tta_evaluation_of_a_trained_binary_model(binary_run: Run) -> None:
    plain = evaluate_checkpoint(binary_run.config, binary_run.dir, device="cpu")
    tiles = PredictConfig(tile_size=48, tile_overlap=0.5, tile_border="mirror", evaluate_tiled=True)
    tiled = evaluate_checkpoint(binary_run.config.model_copy(update={"predict": tiles}), binary_run.dir, device="cpu")
    both = binary_run.config.model_copy(update={"predict": tiles.model_copy(update={"tta": True})})
    averaged = evaluate_checkpoint(both, binary_run.dir, device="cpu")
    assert tiled["num_images"] == plain["num_images"] == averaged["num_images"]
    # the model found the shapes in every mode; the figures differ (other pixels, other views)
    for metrics in (plain, tiled, averaged):
        assert metrics["iou"] > 0.5, metrics["iou"]
    assert tiled["iou"] != plain["iou"] or tiled["pixel_error"] != plain["pixel_error"]
