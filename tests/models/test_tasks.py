"""TaskAdapter behaviour: preparation, target checks, modes, padding, thresholds, RLE encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from segpipe.config import ModelConfig
from segpipe.errors import ConfigError, DataError
from segpipe.models import build_model, get_adapter
from segpipe.models.adapter import IMAGENET_MEAN, IMAGENET_STD
from segpipe.models.rcnn_tasks import encode_masks
from segpipe.task_kinds import TASK_KINDS
from tests.models.synth import batch_for, make_batch

RCNN_TINY = {
    "min_size": 64,
    "max_size": 64,
    "box_score_thresh": 0.0,
    "box_detections_per_img": 5,
    "box_batch_size_per_image": 16,
}


def test_monitors_and_unknown_task() -> None:
    monitors = {t: get_adapter(t, num_labels=2).default_monitor for t in TASK_KINDS}
    assert monitors == {
        "classification": "accuracy",
        "semantic": "miou",
        "binary": "iou",
        "instance": "segm_AP",
        "detection": "bbox_AP",
    }
    assert all(get_adapter(t, num_labels=2).monitor_mode == "max" for t in TASK_KINDS)
    with pytest.raises(ConfigError, match="unknown task 'panoptic'; known: binary, classification"):
        get_adapter("panoptic", num_labels=2)
    with pytest.raises(ConfigError, match="in_channels=1 is not supported"):
        get_adapter("instance", num_labels=3, in_channels=1)


def test_prepare_normalises_on_the_device_and_leaves_the_input_alone() -> None:
    raw = make_batch("semantic", 3, size=(8, 8))
    raw["images"][0, :, 0, 0] = torch.tensor([round(m) for m in IMAGENET_MEAN], dtype=torch.uint8)
    raw["images"][0, :, 0, 1] = 255
    prepared = get_adapter("semantic", num_labels=3).prepare(raw, "cpu")
    x = prepared["images"]
    assert x.dtype == torch.float32 and raw["images"].dtype == torch.uint8
    assert x[0, :, 0, 0].abs().max() < 0.01
    expected = torch.tensor([(255 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)])
    assert torch.allclose(x[0, :, 0, 1], expected, atol=1e-5)
    assert torch.equal(prepared["label_maps"], raw["label_maps"])
    assert prepared["image_ids"] == raw["image_ids"] and prepared["meta"] == raw["meta"]

    gray = get_adapter("semantic", num_labels=3, in_channels=1).prepare(raw, "cpu")["images"]
    mean, std = sum(IMAGENET_MEAN) / 3, sum(IMAGENET_STD) / 3
    assert gray.shape == (2, 1, 8, 8)
    assert torch.allclose(gray[:, 0], (raw["images"].float().mean(dim=1) - mean) / std, atol=1e-5)

    rcnn = get_adapter("detection", num_labels=4).prepare(make_batch("detection", 4, size=(8, 8)), "cpu")
    assert all(im.dtype == torch.float32 and im.min() >= 0 and im.max() <= 1 for im in rcnn["images"])


def test_targets_that_do_not_fit_the_labels_name_the_image() -> None:
    semantic = make_batch("semantic", 3, size=(16, 16))
    semantic["label_maps"][1, 5, 5] = 7
    with pytest.raises(
        DataError, match=r"image 101: label map has value 7; task 'semantic' takes 0\.\.2 and 255"
    ):
        get_adapter("semantic", num_labels=3).prepare(semantic, "cpu")

    binary = batch_for("binary", 2, size=(16, 16))
    binary["label_maps"][0, 8, 8] = 2
    with pytest.raises(DataError, match="image 100: label map has value 2"):
        get_adapter("binary", num_labels=2).prepare(binary, "cpu")

    classes = make_batch("classification", 3, size=(16, 16))
    classes["class_ids"][1] = 3
    with pytest.raises(DataError, match=r"image 101: class_id 3 is outside 0\.\.2"):
        get_adapter("classification", num_labels=3).prepare(classes, "cpu")

    instance = make_batch("instance", 3, size=(32, 32))
    instance["targets"][0]["labels"][1] = 0
    with pytest.raises(DataError, match=r"image 100: instance label 0 is outside 1\.\.2"):
        get_adapter("instance", num_labels=3).prepare(instance, "cpu")

    flat = make_batch("detection", 3, size=(32, 32))
    flat["targets"][1]["boxes"][0, 2] = flat["targets"][1]["boxes"][0, 0]
    with pytest.raises(DataError, match=r"image 101: box .* has no area"):
        get_adapter("detection", num_labels=3).prepare(flat, "cpu")

    cropped = make_batch("instance", 3, size=(32, 32))
    cropped["targets"][0]["masks"] = cropped["targets"][0]["masks"][:, :16]
    with pytest.raises(DataError, match=r"image 100: masks of shape \(2, 16, 32\), expected \(2, 32, 32\)"):
        get_adapter("instance", num_labels=3).prepare(cropped, "cpu")


def test_loss_and_predict_need_a_prepared_batch() -> None:
    model = build_model(ModelConfig(name="cnn_small", channels=[4], hidden=4), "classification", 3)
    adapter = get_adapter("classification", num_labels=3)
    with pytest.raises(RuntimeError, match=r"call adapter\.prepare"):
        adapter.loss(model, make_batch("classification", 3, size=(16, 16)))


def test_modes_switch_and_odd_sizes_are_padded_for_the_model() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="unetplusplus", decoder_channels=[8, 8, 8, 8, 8]), "semantic", 3)
    adapter = get_adapter("semantic", num_labels=3)
    batch = adapter.prepare(make_batch("semantic", 3, size=(50, 70)), "cpu")  # not multiples of 32
    model.eval()
    losses = adapter.loss(model, batch)
    assert model.training and set(losses) == {"loss_ce", "loss_dice"}
    (first, second) = adapter.predict(model, batch)
    assert not model.training
    assert first.label_map.shape == (50, 70) and (first.height, first.width) == (50, 70)
    logits = adapter.forward_logits(model, batch)
    assert logits.shape == (2, 3, 50, 70)
    assert np.array_equal(adapter.decode(logits, batch)[1].label_map, second.label_map)


def test_binary_predictions_threshold_the_single_logit() -> None:
    adapter = get_adapter("binary", num_labels=2)
    batch = adapter.prepare(batch_for("binary", 2, size=(4, 4)), "cpu")
    logits = torch.full((2, 1, 4, 4), -1.0)
    logits[1, 0, :2] = 0.5
    maps = [p.label_map for p in adapter.decode(logits, batch)]
    assert maps[0].sum() == 0 and maps[1][:2].all() and not maps[1][2:].any()
    assert maps[1].dtype == np.uint8


def test_score_threshold_filters_instances() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="maskrcnn_resnet18_fpn", **RCNN_TINY), "instance", 3)
    adapter = get_adapter("instance", num_labels=3)
    batch = adapter.prepare(make_batch("instance", 3, size=(48, 64)), "cpu")
    everything = adapter.predict(model, batch, score_threshold=0.0)
    scores = sorted(i.score for p in everything for i in p.instances)
    assert scores, "an untrained model with threshold 0 still returns instances"
    middle = scores[len(scores) // 2]
    kept = adapter.predict(model, batch, score_threshold=middle)
    assert all(i.score >= middle for p in kept for i in p.instances)
    assert sum(len(p.instances) for p in kept) == sum(s >= middle for s in scores)
    for p in everything:
        assert (p.height, p.width) == (48, 64)
        assert all(i.rle["size"] == [48, 64] for i in p.instances)
    with pytest.raises(NotImplementedError):
        adapter.forward_logits(model, batch)


def test_encode_masks_round_trips_through_pycocotools() -> None:
    masks = np.zeros((2, 5, 7), bool)
    masks[0, 1:3, 2:6] = True
    masks[1, 4, :] = True
    rles = encode_masks(masks)
    assert all(isinstance(r["counts"], str) and r["size"] == [5, 7] for r in rles)
    decoded = [mask_utils.decode({"size": r["size"], "counts": r["counts"].encode()}) for r in rles]
    assert all(np.array_equal(d, m) for d, m in zip(decoded, masks.astype(np.uint8), strict=True))
    assert encode_masks(np.zeros((0, 5, 7), bool)) == []
