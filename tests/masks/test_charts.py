"""Training-curve panels and the box/mask AP pictures (precision–recall per class, per-class AP table)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segpipe.data.images import read_image
from segpipe.engine.run_pictures import draw_evaluation
from segpipe.evaluation.coco import CocoEvaluator, load_coco_quietly
from segpipe.masks.charts import ap_table_rows, curve_panels, plot_curves
from tests.evaluation.test_coco import CMAP, _perturbed_predictions


def _instance_log() -> list[dict]:
    """An instance run's log: 12 COCO stats per epoch (more than the old 12-panel cap held with the
    losses), APl undefined (-1) throughout as on images without large objects, APs defined later."""
    records = []
    for epoch in (1, 2, 3):
        for step in range(1, 5):
            records.append({"split": "train", "epoch": epoch, "step": (epoch - 1) * 4 + step, "lr": 0.01,
                            "loss": 2.0 / step, "loss_classifier": 0.5, "loss_mask": 0.7, "loss_box_reg": 0.3})
        records.append({"split": "train_epoch", "epoch": epoch, "step": epoch * 4, "loss": 1.0 / epoch})
        val = {"split": "val", "epoch": epoch, "step": epoch * 4, "val_loss": 1.5 / epoch}
        for t in ("bbox", "segm"):
            val.update({f"{t}_AP": 0.1 * epoch, f"{t}_AP50": 0.2 * epoch, f"{t}_AP75": 0.05 * epoch,
                        f"{t}_APs": -1.0 if epoch == 1 else 0.1, f"{t}_APm": 0.3, f"{t}_APl": -1.0})
        records.append(val)
    return records


def test_instance_panels_show_segm_and_bbox_and_leave_out_undefined(tmp_path):
    panels = curve_panels(_instance_log())
    by_title = {p.title: p for p in panels}
    assert list(by_title) == ["mask AP (segm)", "box AP (bbox)", "mask AP by object size", "box AP by object size",
                              "training loss", "validation loss", "learning rate"]
    assert set(by_title["mask AP (segm)"].series) == {"segm_AP", "segm_AP50", "segm_AP75"}
    assert set(by_title["mask AP by object size"].series) == {"segm_APs", "segm_APm"}  # APl: -1 throughout
    assert by_title["mask AP by object size"].series["segm_APs"][1] == [-1.0, 0.1, 0.1]  # defined later: kept
    assert set(by_title["training loss"].series) == {"loss", "loss_classifier", "loss_mask", "loss_box_reg",
                                                     "loss (epoch mean)"}
    assert by_title["mask AP (segm)"].series["segm_AP"] == ([1.0, 2.0, 3.0], pytest.approx([0.1, 0.2, 0.3]))
    log = tmp_path / "metrics.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in _instance_log()))
    path, drawn = plot_curves(log, tmp_path / "curves.png")
    assert [p.title for p in drawn] == list(by_title) and read_image(path).shape[1] >= 3 * 400


@pytest.mark.parametrize(("metrics", "panel"), [
    ({"miou": 0.5, "mdice": 0.6, "pixel_accuracy": 0.9}, "mIoU / Dice"),
    ({"iou": 0.5, "dice": 0.6, "pixel_error": 0.1}, "mIoU / Dice"),
    ({"accuracy": 0.8, "macro_f1": 0.7, "top5_accuracy": 0.95}, "accuracy"),
])
def test_dense_and_classification_panels(metrics, panel):
    panels = curve_panels([{"split": "val", "epoch": 1, "step": 2, **metrics, "num_samples": 40},
                           {"split": "train", "epoch": 1, "step": 1, "loss": 1.0, "lr": 0.1}])
    assert panels[0].title == panel
    assert not any("num_samples" in p.series for p in panels)  # a count is no curve


def test_empty_log_gives_no_panels(tmp_path):
    path, drawn = plot_curves(tmp_path / "missing.jsonl", tmp_path / "curves.png")
    assert drawn == [] and read_image(path) is not None


@pytest.mark.parametrize("iou_types", [("bbox", "segm"), ("bbox",)])
def test_pr_curves_and_ap_table_match_cocoeval(shapes_coco, tmp_path, iou_types):
    gt = load_coco_quietly(shapes_coco.annotations)
    preds = _perturbed_predictions(gt, seed=1)
    if iou_types == ("bbox",):  # detection: boxes only
        for p in preds:
            p.task = "detection"
            for inst in p.instances:
                inst.rle = None
    ev = CocoEvaluator(gt, CMAP, iou_types=iou_types)
    ev.process(preds)
    metrics = ev.result()
    curves = ev.pr_curves()
    for t in iou_types:
        # per-class AP from the curves equals the evaluator's per-category AP (COCOeval's own numbers)
        for row in metrics[f"{t}_AP_per_category"]:
            assert curves.ap(t, row["name"]) == pytest.approx(row["AP"])
        assert np.mean([curves.ap(t, n) for n in curves.gt_counts]) == pytest.approx(metrics[f"{t}_AP"])
    header, rows = ap_table_rows(curves)
    assert header[:2] == ["class", "val instances"] and len(header) == 2 + 2 * len(iou_types)
    assert [r[0] for r in rows] == list(CMAP.names[1:]) or [r[0] for r in rows] == list(curves.gt_counts)
    assert sum(int(r[1]) for r in rows) == len(gt.getAnnIds(iscrowd=False))
    written = draw_evaluation(ev, metrics, tmp_path)
    assert sorted(p.name for p in written) == ["ap_per_class.png", "pr_curves.png"]
    assert all(read_image(p).shape[0] > 200 for p in written)


@pytest.fixture(scope="module")
def shapes_coco(tmp_path_factory):
    from segpipe.data.synthetic import make_shapes_coco

    return make_shapes_coco(tmp_path_factory.mktemp("coco"), n_images=10, size=(96, 128), max_shapes=4, seed=3)
