"""Transfer from files trained on other classes, shaped like the real ones (torchvision/smp constructors,
random weights): the load report names exactly the re-initialised tensors, every other tensor is the file's."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch
import torchvision
from safetensors.torch import save_file
from torchvision.models import detection

from segpipe.config import ModelConfig
from segpipe.errors import WeightsError
from segpipe.models.registry import build_model_reported


def _check_transfer(model: torch.nn.Module, file_state: dict[str, torch.Tensor], report, reinit: set[str]) -> None:
    assert set(report.reinitialised) == reinit
    own = model.state_dict()
    compared = 0
    for key, value in own.items():
        if key in reinit or key.endswith("num_batches_tracked"):
            continue
        assert torch.equal(value, file_state[key]), key
        compared += 1
    assert compared == len([k for k in report.loaded if not k.endswith("num_batches_tracked")])
    for key in reinit:  # re-initialised: the model's own shape, not the file's
        assert key not in file_state or own[key].shape != file_state[key].shape or key not in own


def test_coco_mask_rcnn_into_a_one_class_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    coco = detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path / "maskrcnn_resnet50_fpn_coco.pth"
    state = coco.state_dict()
    torch.save(state, path)
    del coco
    # 2 labels: background + 1 class
    model, report = build_model_reported(ModelConfig(name="maskrcnn_resnet50_fpn", weights=path), "instance", 2)
    heads = {f"roi_heads.box_predictor.{p}.{t}" for p in ("cls_score", "bbox_pred") for t in ("weight", "bias")}
    heads |= {"roi_heads.mask_predictor.mask_fcn_logits.weight", "roi_heads.mask_predictor.mask_fcn_logits.bias"}
    _check_transfer(model, state, report, heads)
    assert model.roi_heads.box_predictor.cls_score.out_features == 2  # background + the one class
    # the file's batch norm counters have nowhere to go (pretrained R-CNN: frozen batch norm)
    assert report.ignored and all(k.endswith("num_batches_tracked") for k in report.ignored)
    assert report.reinitialised[
        "roi_heads.box_predictor.cls_score.weight"] == "class-dependent layer: file (91, 1024) vs model (2, 1024)"


def test_imagenet_resnet_into_a_two_class_classifier_ddp_wrapped(tmp_path: Path) -> None:
    torch.manual_seed(0)
    imagenet = torchvision.models.resnet18(weights=None)  # 1000-way fc
    state = imagenet.state_dict()
    path = tmp_path / "resnet18_ddp.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": torch.tensor(90)}, path)
    model, report = build_model_reported(ModelConfig(name="resnet18", weights=path), "classification", 2)
    _check_transfer(model, state, report, {"fc.weight", "fc.bias"})
    assert report.wrapping == "prefix 'module.' removed"
    assert model.fc.out_features == 2


def test_smp_unet_21_classes_into_binary(tmp_path: Path) -> None:
    torch.manual_seed(0)
    voc = smp.Unet(encoder_name="resnet18", encoder_weights=None, classes=21)
    state = voc.state_dict()
    path = tmp_path / "unet_voc.safetensors"
    save_file(state, str(path))
    model, report = build_model_reported(ModelConfig(name="unet", weights=str(path)), "binary", 2)
    _check_transfer(model, state, report, {"segmentation_head.0.weight", "segmentation_head.0.bias"})
    text = report.summary()
    assert "2 re-initialised" in text and "segmentation_head.0.weight: class-dependent layer" in text
    saved = json.loads(report.save(tmp_path).read_text())
    assert saved["reinitialised"].keys() == {"segmentation_head.0.weight", "segmentation_head.0.bias"}


def test_strict_keeps_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match=r"2 shape mismatches: fc\.bias.*model\.strict is true"):
        build_model_reported(ModelConfig(name="resnet18", weights=str(path), strict=True), "classification", 2)


def test_a_backbone_mismatch_is_still_an_error(tmp_path: Path) -> None:
    path = tmp_path / "resnet34.pt"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match=r"unexpected keys: layer1\.2\.") as e:
        build_model_reported(ModelConfig(name="resnet18", weights=str(path)), "classification", 2)
    assert str(path) in str(e.value)


def test_mask_rcnn_file_fine_tunes_a_faster_rcnn(tmp_path: Path) -> None:
    torch.manual_seed(0)
    coco = detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path / "maskrcnn.pt"
    torch.save(coco.state_dict(), path)
    _, report = build_model_reported(ModelConfig(name="fasterrcnn_resnet50_fpn", weights=str(path)), "detection", 3)
    assert any(k.startswith("roi_heads.mask_head.") for k in report.ignored)
    assert len(report.reinitialised) == 4


def test_pickles_that_run_code_are_refused_with_what_to_convert_to(tmp_path: Path) -> None:
    d2 = tmp_path / "model_final_f10217.pkl"
    d2.write_bytes(pickle.dumps({"model": {"backbone.bottom_up.stem.conv1.weight": [0.0]}, "__author__": "x"}))
    with pytest.raises(WeightsError, match=r"model_final_f10217\.pkl: refused: .*Python pickle.*safetensors"):
        build_model_reported(ModelConfig(name="resnet18", weights=str(d2)), "classification", 2)
    whole = tmp_path / "whole_model.pt"
    torch.save(torchvision.models.resnet18(weights=None), whole)
    with pytest.raises(WeightsError, match=r"refused: .*torch\.save\(model\).*state_dict"):
        build_model_reported(ModelConfig(name="resnet18", weights=str(whole)), "classification", 2)


def test_a_segpipe_run_directory_is_a_weights_source(tmp_path: Path) -> None:
    torch.manual_seed(0)
    donor, _ = build_model_reported(ModelConfig(name="cnn_small", channels=[8], hidden=8), "classification", 5)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": donor.state_dict(), "epoch": 3}, run / "best.pt")
    model, report = build_model_reported(
        ModelConfig(name="cnn_small", channels=[8], hidden=8, weights=str(run)), "classification", 3
    )
    assert set(report.reinitialised) == {"classifier.5.weight", "classifier.5.bias"}
    assert torch.equal(model.features[0].weight, donor.features[0].weight)


def test_categories_added_keep_the_rows_of_the_known_ones(tmp_path: Path) -> None:
    """Fine-tuning a production version after a category was added: its heads keep what they knew."""
    from segpipe.data.categories import CategoryMap

    old = CategoryMap(ids=(3, 7), names=("circle", "square"))
    new = CategoryMap(ids=(3, 12, 7), names=("circle", "triangle", "square"))  # one added, in the middle
    torch.manual_seed(0)
    small = {"name": "maskrcnn_resnet18_fpn", "min_size": 64, "max_size": 64}
    donor, _ = build_model_reported(ModelConfig(**small), "instance", old.num_labels)
    path = tmp_path / "best.pt"
    torch.save({"model": donor.state_dict(), "category_map": old.to_dict()}, path)
    model, report = build_model_reported(ModelConfig(**small, weights=str(path)), "instance", new.num_labels, new)
    assert len(report.reinitialised) == 6 and "rows of labels [0, 1, 3] copied" in report.reinitialised[
        "roi_heads.box_predictor.cls_score.weight"]
    old_cls, new_cls = donor.roi_heads.box_predictor.cls_score.weight, model.roi_heads.box_predictor.cls_score.weight
    for new_label, old_label in ((0, 0), (1, 1), (3, 2)):  # background, circle, square
        assert torch.equal(new_cls[new_label], old_cls[old_label])
    assert not torch.equal(new_cls[2], old_cls[1]) and not torch.equal(new_cls[2], old_cls[2])
    old_box, new_box = donor.roi_heads.box_predictor.bbox_pred.weight, model.roi_heads.box_predictor.bbox_pred.weight
    assert torch.equal(new_box[12:16], old_box[8:12])  # 4 regression rows per label
    old_mask = donor.roi_heads.mask_predictor.mask_fcn_logits.weight
    assert torch.equal(model.roi_heads.mask_predictor.mask_fcn_logits.weight[3], old_mask[2])
