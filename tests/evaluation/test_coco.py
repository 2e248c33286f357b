import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segpipe.data.categories import CategoryMap
from segpipe.data.synthetic import SHAPE_CATEGORIES, make_shapes_coco
from segpipe.errors import DataError
from segpipe.evaluation.coco import CocoEvaluator, load_coco_quietly
from segpipe.masks.encode import mask_to_rle, write_coco_results
from segpipe.prediction import Instance, Prediction

CMAP = CategoryMap(tuple(c for c, _ in SHAPE_CATEGORIES), tuple(n for _, n in SHAPE_CATEGORIES))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes_coco(tmp_path_factory.mktemp("coco"), n_images=10, size=(96, 128), max_shapes=4, seed=3)


def _perturbed_predictions(gt: COCO, seed: int = 0) -> list[Prediction]:
    """Ground truth turned into imperfect predictions: shifted masks, jittered boxes, random scores,
    some objects missed, some labels wrong, a few false positives."""
    rng = np.random.default_rng(seed)
    preds = []
    for image_id in sorted(gt.getImgIds()):
        info = gt.imgs[image_id]
        h, w = info["height"], info["width"]
        instances = []
        for ann in gt.imgToAnns[image_id]:
            if ann["iscrowd"] or rng.random() < 0.15:
                continue
            mask = np.roll(gt.annToMask(ann), tuple(rng.integers(-3, 4, size=2)), axis=(0, 1))
            x, y, bw, bh = ann["bbox"]
            box = tuple(float(v) for v in np.array([x, y, x + bw, y + bh]) + rng.normal(0, 2, 4))
            label = CMAP.to_label(ann["category_id"]) if rng.random() > 0.1 else int(rng.integers(1, 4))
            instances.append(Instance(box, label, float(rng.uniform(0.05, 1.0)), mask_to_rle(mask)))
        if rng.random() < 0.4:  # a false positive
            mask = np.zeros((h, w), np.uint8)
            mask[10:30, 20:50] = 1
            label, score = int(rng.integers(1, 4)), float(rng.uniform(0, 1))
            instances.append(Instance((20.0, 10.0, 50.0, 30.0), label, score, mask_to_rle(mask)))
        preds.append(Prediction(image_id=image_id, task="instance", height=h, width=w, instances=instances))
    return preds


def _by_hand(annotations, results_file, iou_type, image_ids):
    """pycocotools alone: fresh ground truth, results from the written file, COCOeval defaults."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotations))
        results = json.loads(results_file.read_text())
        drop = "segmentation" if iou_type == "bbox" else "bbox"
        dt = gt.loadRes([{k: v for k, v in r.items() if k != drop} for r in results])
        E = COCOeval(gt, dt, iou_type)
        E.params.imgIds = sorted(image_ids)
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E


def test_numbers_equal_pycocotools_run_by_hand(shapes, tmp_path, capsys):
    gt = load_coco_quietly(shapes.annotations)
    preds = _perturbed_predictions(gt)
    ev = CocoEvaluator(gt, CMAP)
    ev.process(preds[:5])
    ev.process(preds[5:])
    r = ev.result()
    assert capsys.readouterr().out == ""  # pycocotools kept quiet
    assert "Average Precision" in ev.summary()

    results_file = tmp_path / "results.json"
    write_coco_results(preds, CMAP, results_file)
    image_ids = [p.image_id for p in preds]
    for iou_type in ("bbox", "segm"):
        E = _by_hand(shapes.annotations, results_file, iou_type, image_ids)
        names = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
        assert [r[f"{iou_type}_{n}"] for n in names] == E.stats[:6].tolist()  # exact, not approx
        assert 0.2 < r[f"{iou_type}_AP"] < 0.99  # the perturbation makes a real, imperfect score
        per_cat = r[f"{iou_type}_AP_per_category"]
        assert [c["category_id"] for c in per_cat] == [3, 7, 12]
        assert [c["name"] for c in per_cat] == ["circle", "square", "triangle"]
        for k, row in enumerate(per_cat):
            p = E.eval["precision"][:, :, k, 0, -1]
            assert row["AP"] == float(np.mean(p[p > -1]))
        # the mean of the per-category APs is the summary AP, as COCOeval defines it
        assert np.mean([c["AP"] for c in per_cat]) == pytest.approx(r[f"{iou_type}_AP"])


def test_only_processed_images_are_evaluated(shapes):
    gt = load_coco_quietly(shapes.annotations)
    preds = _perturbed_predictions(gt, seed=1)
    ev = CocoEvaluator(gt, CMAP, iou_types=("bbox",))
    ev.process(preds[3:7])
    r = ev.result()
    assert ev.evals["bbox"].params.imgIds == sorted(p.image_id for p in preds[3:7])
    assert set(r) == {"bbox_AP", "bbox_AP50", "bbox_AP75", "bbox_APs", "bbox_APm", "bbox_APl", "bbox_AP_per_category"}
    ev.reset()
    assert ev.results == [] and ev.image_ids == set()


def test_no_detections_scores_zero_where_there_is_ground_truth(shapes, capsys):
    gt = load_coco_quietly(shapes.annotations)
    ev = CocoEvaluator(gt, CMAP)
    ev.process([Prediction(image_id=i, task="instance", height=96, width=128) for i in gt.getImgIds()])
    r = ev.result()
    assert capsys.readouterr().out == ""
    areas = [a["area"] for a in gt.dataset["annotations"] if not a["iscrowd"]]
    has = {
        "AP": bool(areas),
        "APs": any(a < 32**2 for a in areas),
        "APm": any(32**2 <= a < 96**2 for a in areas),
        "APl": any(a >= 96**2 for a in areas),
    }
    for iou_type in ("bbox", "segm"):
        for name, present in has.items():
            assert r[f"{iou_type}_{name}"] == (0.0 if present else -1.0), (iou_type, name)
        with_gt = {a["category_id"] for a in gt.dataset["annotations"] if not a["iscrowd"]}
        for row in r[f"{iou_type}_AP_per_category"]:
            assert row["AP"] == (0.0 if row["category_id"] in with_gt else -1.0)


def test_nothing_processed_gives_undefined_not_a_crash(shapes):
    r = CocoEvaluator(shapes.annotations, CMAP).result()  # annotation path accepted too
    assert r["bbox_AP"] == -1.0 and r["segm_AP"] == -1.0


def test_bad_predictions_are_refused_with_the_image_named(shapes):
    gt = load_coco_quietly(shapes.annotations)
    ev = CocoEvaluator(gt, CMAP)
    with pytest.raises(DataError, match="image 999: not in the ground-truth"):
        ev.process([Prediction(image_id=999, task="instance", height=96, width=128)])
    small = mask_to_rle(np.ones((48, 64), np.uint8))
    with pytest.raises(DataError, match="image 1001: instance 0 mask is 48×64, the image is 96×128"):
        ev.process([Prediction(1001, "instance", 96, 128, instances=[Instance((0, 0, 5, 5), 1, 0.9, small)])])
    with pytest.raises(ValueError, match="no mask but iou_types include 'segm'"):
        ev.process([Prediction(1001, "detection", 96, 128, instances=[Instance((0, 0, 5, 5), 1, 0.9)])])
    with pytest.raises(ValueError, match="choose from"):
        CocoEvaluator(gt, CMAP, iou_types=("keypoints",))


def test_detection_boxes_only(shapes):
    gt = load_coco_quietly(shapes.annotations)
    preds = _perturbed_predictions(gt, seed=2)
    for p in preds:
        p.task = "detection"
        for inst in p.instances:
            inst.rle = None
    ev = CocoEvaluator(gt, CMAP, iou_types=("bbox",))
    ev.process(preds)
    assert ev.primary_metric == "bbox_AP"
    assert 0.2 < ev.result()["bbox_AP"] < 0.99
