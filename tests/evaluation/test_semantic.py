import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from segpipe.data.categories import CategoryMap
from segpipe.data.sample import Sample
from segpipe.errors import DataError
from segpipe.evaluation.semantic import BinaryEvaluator, SemanticEvaluator, confusion_matrix
from segpipe.prediction import Prediction

# 2×3 target and prediction: the 255 pixel is ignored, so 5 pixels count.
# (target, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,1)
TARGET = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
PRED = np.array([[0, 1, 1], [1, 1, 0]], np.uint8)
SHAPES = CategoryMap((3, 7, 12), ("circle", "square", "triangle"))  # labels 0..3, background 0


def _pred(label_map, image_id=1):
    h, w = label_map.shape
    return Prediction(image_id=image_id, task="semantic", height=h, width=w, label_map=label_map)


def test_confusion_matrix_counts_target_rows_prediction_columns_and_skips_ignore():
    cm = confusion_matrix(TARGET, PRED, 3, ignore_index=255)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [0, 1, 0]]


def test_confusion_matrix_rejects_out_of_range_classes():
    with pytest.raises(ValueError, match="class 3"):
        confusion_matrix(np.array([0, 3]), np.array([0, 0]), 3)


def test_semantic_metrics_match_hand_computed_values():
    ev = SemanticEvaluator(num_classes=3)
    ev.process([_pred(PRED)], [TARGET])
    r = ev.result()
    # class 0: TP 1, FP 0, FN 1; class 1: TP 2, FP 2, FN 0; class 2: TP 0, FP 0, FN 1
    assert r["iou_per_class"] == pytest.approx([1 / 2, 2 / 4, 0.0])
    assert r["dice_per_class"] == pytest.approx([2 / 3, 4 / 6, 0.0])
    assert r["miou"] == pytest.approx(1 / 3)
    assert r["mdice"] == pytest.approx(4 / 9)
    assert r["pixel_accuracy"] == pytest.approx(3 / 5)
    assert r["num_images"] == 1


def test_class_absent_from_target_and_prediction_is_left_out_of_the_mean():
    ev = SemanticEvaluator(SHAPES)  # 4 labels; label 3 appears nowhere
    ev.process([_pred(PRED)], [TARGET])
    r = ev.result()
    assert r["iou_per_class"][3] is None and r["dice_per_class"][3] is None
    assert r["miou"] == pytest.approx(1 / 3)
    assert r["class_names"] == ["background", "circle", "square", "triangle"]
    assert len(r["confusion_matrix"]) == 4


def test_class_predicted_but_absent_from_target_counts_as_zero():
    target = np.zeros((2, 2), np.uint8)
    pred = np.array([[0, 0], [0, 2]], np.uint8)
    ev = SemanticEvaluator(num_classes=3)
    ev.process([_pred(pred)], [target])
    r = ev.result()
    assert r["iou_per_class"] == [pytest.approx(3 / 4), None, 0.0]
    assert r["miou"] == pytest.approx((3 / 4 + 0) / 2)


def test_targets_as_samples_arrays_and_tensors_agree_and_batches_accumulate():
    preds = [_pred(PRED, 1), _pred(np.zeros_like(PRED), 2)]
    targets = [TARGET, np.full_like(TARGET, 2)]
    results = []
    for batch in (
        targets,
        np.stack(targets),
        torch.from_numpy(np.stack(targets)).long(),
        [Sample(image=np.zeros((2, 3, 3), np.uint8), image_id=i + 1, label_map=t) for i, t in enumerate(targets)],
    ):
        ev = SemanticEvaluator(num_classes=3)
        ev.process(preds, batch)
        results.append(ev.result())
    assert all(r == results[0] for r in results)
    one_by_one = SemanticEvaluator(num_classes=3)
    for p, t in zip(preds, targets, strict=False):
        one_by_one.process([p], [t])
    assert one_by_one.result() == results[0]
    one_by_one.reset()
    assert one_by_one.result()["num_images"] == 0 and one_by_one.result()["miou"] == 0.0


def test_shape_mismatch_and_bad_target_values_name_the_image():
    ev = SemanticEvaluator(num_classes=3)
    with pytest.raises(ValueError, match="image 7: prediction is 2×3, target 3×3"):
        ev.process([_pred(PRED, 7)], [np.zeros((3, 3), np.uint8)])
    with pytest.raises(DataError, match="image 8: target holds class 9"):
        ev.process([_pred(PRED, 8)], [np.full((2, 3), 9, np.uint8)])
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        ev.process([_pred(PRED), _pred(PRED)], [TARGET])


def test_binary_reports_foreground_iou_dice_and_pixel_error():
    target = np.array([[0, 1, 1, 255]], np.uint8)
    pred = np.array([[1, 1, 0, 0]], np.uint8)
    ev = BinaryEvaluator(CategoryMap((1,), ("lesion",)))
    ev.process([_pred(pred)], [target])
    r = ev.result()
    # foreground: TP 1, FP 1, FN 1
    assert r["iou"] == pytest.approx(1 / 3)
    assert r["dice"] == pytest.approx(1 / 2)
    assert r["pixel_accuracy"] == pytest.approx(1 / 3)
    assert r["pixel_error"] == pytest.approx(2 / 3)
    assert r["class_names"] == ["background", "lesion"]
    assert BinaryEvaluator.primary_metric == "iou"


def test_binary_with_no_foreground_anywhere_is_perfect_agreement():
    ev = BinaryEvaluator()
    ev.process([_pred(np.zeros((4, 4), np.uint8))], [np.zeros((4, 4), np.uint8)])
    r = ev.result()
    assert r["iou"] == 1.0 and r["dice"] == 1.0 and r["pixel_error"] == 0.0
    assert r["iou_per_class"] == [1.0, None]


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 5), st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), st.booleans()), max_size=60))
def test_confusion_matrix_equals_counting_pairs(k, pairs):
    pairs = [(t % k, p % k, ignored) for t, p, ignored in pairs]
    target = np.array([255 if ignored else t for t, _, ignored in pairs], np.int64)
    pred = np.array([p for _, p, _ in pairs], np.int64)
    expected = np.zeros((k, k), np.int64)
    for t, p, ignored in pairs:
        if not ignored:
            expected[t, p] += 1
    assert np.array_equal(confusion_matrix(target, pred, k, ignore_index=255), expected)
