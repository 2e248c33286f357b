import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_recall_fscore_support

from segpipe.data.categories import CategoryMap
from segpipe.data.sample import Sample
from segpipe.errors import DataError
from segpipe.evaluation.classify import ClassificationEvaluator
from segpipe.prediction import Prediction


def _cmap(k):
    return CategoryMap(tuple(range(10, 10 + k)), tuple(f"c{i}" for i in range(k)), offset=0)


def _preds(classes, scores=None):
    return [
        Prediction(i, "classification", 8, 8, class_id=int(c), scores=None if scores is None else scores[i])
        for i, c in enumerate(classes)
    ]


TRUTH = [0, 0, 1, 1, 2]
PREDICTED = [0, 1, 1, 1, 1]


def test_metrics_match_hand_computed_values():
    ev = ClassificationEvaluator(_cmap(3))
    ev.process(_preds(PREDICTED), TRUTH)
    r = ev.result()
    assert r["accuracy"] == pytest.approx(3 / 5)
    assert r["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 1, 0]]
    assert r["precision_per_class"] == pytest.approx([1.0, 2 / 4, 0.0])
    assert r["recall_per_class"] == pytest.approx([1 / 2, 1.0, 0.0])
    assert r["f1_per_class"] == pytest.approx([2 / 3, 2 / 3, 0.0])
    assert r["macro_f1"] == pytest.approx(4 / 9)
    assert r["class_names"] == ["c0", "c1", "c2"]
    assert "top5_accuracy" not in r  # fewer than 5 classes


def test_absent_class_is_none_and_macro_f1_agrees_with_sklearn():
    ev = ClassificationEvaluator(_cmap(4))  # class 3 never seen
    ev.process(_preds(PREDICTED), TRUTH)
    r = ev.result()
    assert r["f1_per_class"][3] is None and r["precision_per_class"][3] is None
    assert r["macro_f1"] == pytest.approx(f1_score(TRUTH, PREDICTED, average="macro", zero_division=0))
    p, rec, _f, _ = precision_recall_fscore_support(TRUTH, PREDICTED, labels=[0, 1, 2], zero_division=0)
    assert r["precision_per_class"][:3] == pytest.approx(p.tolist())
    assert r["recall_per_class"][:3] == pytest.approx(rec.tolist())


def test_top5_accuracy_from_scores():
    k = 6
    rng = np.random.default_rng(0)
    truth = [0, 1, 2]
    scores = rng.random((3, k)).astype(np.float32)
    scores[0, 0] = 2.0  # truth ranked 1st
    scores[1] = np.arange(k)[::-1] / k  # class 1 ranked 2nd
    scores[2] = np.arange(k) / k
    scores[2, 2] = -1.0  # class 2 ranked last of 6: outside the top 5
    ev = ClassificationEvaluator(_cmap(k))
    ev.process(_preds(scores.argmax(1), scores), torch.tensor(truth))
    r = ev.result()
    assert r["top5_accuracy"] == pytest.approx(2 / 3)
    assert r["accuracy"] == pytest.approx(1 / 3)


def test_no_top5_when_a_prediction_lacks_scores():
    ev = ClassificationEvaluator(_cmap(6))
    preds = _preds([0, 1], [np.eye(6, dtype=np.float32)[0], None])
    ev.process(preds, [0, 1])
    assert "top5_accuracy" not in ev.result()


def test_samples_as_targets_and_class_from_scores():
    ev = ClassificationEvaluator(_cmap(3))
    preds = [Prediction(image_id="a", task="classification", height=4, width=4, scores=np.array([0.1, 0.7, 0.2]))]
    ev.process(preds, [Sample(image=np.zeros((4, 4, 3), np.uint8), image_id="a", class_id=1)])
    assert ev.result()["accuracy"] == 1.0


def test_bad_targets_raise_with_image_ids():
    ev = ClassificationEvaluator(_cmap(3))
    with pytest.raises(DataError, match="images 0, 1: target holds class 5"):
        ev.process(_preds([0, 1]), [0, 5])
    with pytest.raises(DataError, match="image x: sample has no class_id"):
        ev.process(_preds([0]), [Sample(image=np.zeros((4, 4, 3), np.uint8), image_id="x")])
    with pytest.raises(ValueError, match="1 predictions but 2 targets"):
        ev.process(_preds([0]), [0, 1])
