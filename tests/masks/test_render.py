import json

import cv2
import numpy as np
import pytest

from segpipe.data.categories import CategoryMap
from segpipe.data.sample import Sample
from segpipe.masks.encode import mask_to_rle
from segpipe.masks.render import (
    label_colour,
    metric_curves,
    overlay,
    overlay_grid,
    plot_confusion_matrix,
    plot_training_curves,
    read_metric_records,
    save_overlay,
)
from segpipe.prediction import Instance, Prediction

CMAP = CategoryMap((3, 7, 12), ("circle", "square", "triangle"))
GREY = 100


def _image(h=48, w=64):
    return np.full((h, w, 3), GREY, np.uint8)


def _instance_prediction(h=48, w=64):
    mask = np.zeros((h, w), np.uint8)
    mask[20:40, 30:60] = 1
    instance = Instance((30.0, 20.0, 60.0, 40.0), 2, 0.87, mask_to_rle(mask))
    return Prediction(1, "instance", h, w, instances=[instance]), mask


def test_instance_overlay_tints_the_mask_and_leaves_the_rest():
    pred, _mask = _instance_prediction()
    out = overlay(_image(), pred, CMAP, alpha=0.5)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    inside = out[30, 45]  # well inside the mask, away from the outline and caption
    expected = np.round((GREY + np.array(label_colour(2))) / 2)
    assert np.abs(inside.astype(int) - expected).max() <= 1
    assert (out[42:, :20] == GREY).all()  # far from the object and its caption: untouched
    big = overlay(_image(), pred, CMAP, scale=3)
    assert big.shape == (144, 192, 3)


def test_score_threshold_hides_weak_instances():
    pred, _ = _instance_prediction()
    assert (overlay(_image(), pred, CMAP, score_threshold=0.9) == GREY).all()


def test_semantic_sample_and_classification_overlays():
    label_map = np.zeros((48, 64), np.uint8)
    label_map[10:30, 10:30] = 1
    label_map[35:, 40:] = 3
    label_map[0, :] = 255
    semantic = overlay(_image(), Prediction("s", "semantic", 48, 64, label_map=label_map), CMAP)
    assert not (semantic[20, 20] == GREY).all() and not (semantic[40, 50] == GREY).all()
    assert not np.array_equal(semantic[20, 20], semantic[40, 50])  # classes get different colours

    masks = np.zeros((1, 48, 64), np.uint8)
    masks[0, 5:15, 5:15] = 1
    boxes = np.array([[5, 5, 15, 15]], np.float32)
    sample = Sample(image=_image(), image_id=3, masks=masks, boxes=boxes, labels=np.array([1]))
    drawn = overlay(sample.image, sample, CMAP)
    assert not (drawn[10, 10] == GREY).all()

    cls_map = CategoryMap(CMAP.ids, CMAP.names, offset=0)
    pred = Prediction("c", "classification", 48, 64, class_id=0, scores=np.array([0.8, 0.1, 0.1]))
    assert not (overlay(_image(), pred, cls_map)[:8, :20] == GREY).all()  # the caption


def test_overlay_refuses_a_mismatched_image():
    pred, _ = _instance_prediction()
    with pytest.raises(ValueError, match="image 1: image is 32×32, its prediction 48×64"):
        overlay(_image(32, 32), pred, CMAP)


def test_save_overlay_and_grid_write_pngs_of_the_right_size(tmp_path):
    pred, _ = _instance_prediction()
    path = save_overlay(_image(), pred, CMAP, tmp_path / "o" / "one.png", min_size=128)
    assert cv2.imread(str(path)).shape == (144, 192, 3)  # 48 px → ×3 reaches 128
    items = [(_image(), pred)] * 5
    grid = cv2.imread(str(overlay_grid(items, CMAP, tmp_path / "grid.png", cols=2, tile=128)))
    # 2 columns of 128; 3 rows of (96 px fitted landscape + 22 px caption)
    assert grid.shape == (3 * (96 + 22), 256, 3)
    with pytest.raises(ValueError, match="at least one"):
        overlay_grid([], CMAP, tmp_path / "none.png")


def _write_log(path):
    lines = []
    for epoch in (1, 2, 3):
        for step, loss in ((10, 1.0 / epoch), (20, 0.8 / epoch)):
            record = {"epoch": epoch, "step": step, "split": "train", "loss": loss, "lr": 1e-3 / epoch}
            lines.append(json.dumps(record))
        record = {"epoch": epoch, "split": "val", "loss": 1.1 / epoch, "miou": 0.2 * epoch, "iou_per_class": [0.1, None]}
        lines.append(json.dumps(record))
    lines.append(json.dumps({"split": "val", "miou": "n/a"}))  # no epoch, no number
    lines.append("")
    lines.append('{"epoch": 4, "split": "tra')  # a log cut mid-write
    path.write_text("\n".join(lines))


def test_metric_curves_average_within_an_epoch(tmp_path):
    log = tmp_path / "metrics.jsonl"
    _write_log(log)
    records = read_metric_records(log)
    assert len(records) == 10
    curves = metric_curves(records)
    xs, ys = curves["loss"]["train"]
    assert xs == [1.0, 2.0, 3.0] and ys == pytest.approx([0.9, 0.45, 0.3])
    assert curves["miou"]["val"] == ([1.0, 2.0, 3.0], pytest.approx([0.2, 0.4, 0.6]))
    assert "iou_per_class" not in curves and "step" not in curves and "epoch" not in curves


def test_training_curves_png(tmp_path):
    log = tmp_path / "metrics.jsonl"
    _write_log(log)
    out = plot_training_curves(log, tmp_path / "plots" / "curves.png")
    picture = cv2.imread(str(out))
    assert picture is not None and picture.shape[0] > 200 and picture.shape[1] > 600
    empty = plot_training_curves(tmp_path / "missing.jsonl", tmp_path / "empty.png")
    assert cv2.imread(str(empty)) is not None


def test_confusion_matrix_png(tmp_path):
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 0]])  # the last class never occurs: a zero row
    out = plot_confusion_matrix(cm, ["background", "circle", "square"], tmp_path / "cm.png")
    assert cv2.imread(str(out)) is not None
    raw = plot_confusion_matrix(cm.tolist(), ["a", "b", "c"], tmp_path / "cm_raw.png", normalize=False)
    assert cv2.imread(str(raw)) is not None
    with pytest.raises(ValueError, match="does not match 2 class names"):
        plot_confusion_matrix(cm, ["a", "b"], tmp_path / "bad.png")
