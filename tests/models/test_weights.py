"""Offline weights: formats, safe loading, mismatch reports, backbone-only loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from segpipe.config import ModelConfig
from segpipe.errors import WeightsError
from segpipe.models import build_model, load_weights, read_state_dict

TINY_CNN = {"name": "cnn_small", "channels": [8, 16], "hidden": 16}
TINY_UNET = {"name": "unet", "decoder_channels": [8, 8, 8, 8, 8]}


def _cnn(num_labels: int = 3, **extra: object) -> torch.nn.Module:
    return build_model(ModelConfig(**TINY_CNN, **extra), "classification", num_labels)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Same tensors; batch-norm step counters aside (a model loaded with weights has frozen batch norm)."""
    a = {k: v for k, v in a.items() if not k.endswith("num_batches_tracked")}
    b = {k: v for k, v in b.items() if not k.endswith("num_batches_tracked")}
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_round_trip_safetensors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = _cnn()
    path = tmp_path / "cnn.safetensors"
    save_file(source.state_dict(), str(path))
    torch.manual_seed(1)
    loaded = _cnn(weights=path)
    assert _same(loaded.state_dict(), source.state_dict())


@pytest.mark.parametrize("wrapped", [False, True], ids=["state_dict", "segpipe_checkpoint"])
def test_round_trip_torch_file(tmp_path: Path, wrapped: bool) -> None:
    torch.manual_seed(0)
    source = build_model(ModelConfig(**TINY_UNET), "semantic", 4)
    path = tmp_path / "unet.pt"
    state = source.state_dict()
    torch.save(
        {"model": state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 3} if wrapped else state,
        path,
    )
    torch.manual_seed(1)
    loaded = build_model(ModelConfig(**TINY_UNET, weights=path), "semantic", 4)
    assert _same(loaded.state_dict(), state)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsError, match=f"{path}: weights file not found"):
        _cnn(weights=path)


def test_mismatched_keys_are_listed_with_counts(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pt"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=3).state_dict(), path)
    with pytest.raises(WeightsError) as e:
        _cnn(weights=path)
    msg = str(e.value)
    assert str(path) in msg
    model_keys = len(_cnn().state_dict())
    # no key of cnn_small is in a resnet; its class-dependent last layer (2 tensors) would be re-initialised
    assert f"{model_keys - 2} missing keys: classifier.2.bias" in msg
    assert "unexpected keys: bn1.bias, bn1.num_batches_tracked" not in msg  # BN step counters are ignored
    assert "unexpected keys: bn1.bias, bn1.running_mean" in msg and "(+" in msg  # first 10, then "+N more"
    assert "none of the file's" in msg


def test_shape_mismatch_is_reported_and_nothing_loaded(tmp_path: Path) -> None:
    path = tmp_path / "five_classes.safetensors"
    save_file(_cnn(num_labels=5).state_dict(), str(path))
    torch.manual_seed(3)
    target = _cnn(num_labels=3)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(
        WeightsError, match=r"2 shape mismatches: classifier\.5\.bias: file \(5,\) vs model \(3,\)"
    ):
        load_weights(target, path)
    assert _same(target.state_dict(), before)  # checked first, so a failed load changes nothing


def test_non_strict_loading_allows_missing_and_unexpected_keys(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = _cnn()
    state = {k: v for k, v in source.state_dict().items() if k.startswith("features.")}
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.safetensors"
    save_file(state, str(path))
    target = _cnn()
    with pytest.raises(
        WeightsError, match=r"4 missing keys: classifier\.2\.bias.*1 unexpected keys: extra\.weight"
    ):
        load_weights(target, path)
    load_weights(target, path, strict=False)
    assert torch.equal(target.features[0].weight, source.features[0].weight)


def test_a_pickled_object_is_refused_not_loaded_unsafely(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model": _cnn().state_dict(), "callback": Path("/etc/passwd")}, path)
    with pytest.raises(WeightsError) as e:
        _cnn(weights=path)
    msg = str(e.value)
    assert str(path) in msg and "refused" in msg and "weights_only" in msg and "PosixPath" in msg


def test_non_tensor_entries_and_garbage_files(tmp_path: Path) -> None:
    odd = tmp_path / "odd.pt"
    torch.save({"conv.weight": torch.zeros(1), "epoch": 3}, odd)
    with pytest.raises(WeightsError, match=r"1 entries are not tensors: epoch \(int\)"):
        read_state_dict(odd)
    for name in ("junk.pt", "junk.safetensors"):
        junk = tmp_path / name
        junk.write_bytes(b"definitely not weights")
        with pytest.raises(WeightsError, match=f"{junk}: not a readable"):
            read_state_dict(junk)


def test_backbone_weights_go_into_the_encoder_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    donor = build_model(ModelConfig(**TINY_UNET), "semantic", 4)
    path = tmp_path / "encoder.safetensors"
    save_file(donor.encoder.state_dict(), str(path))
    torch.manual_seed(1)
    model = build_model(ModelConfig(**TINY_UNET, backbone_weights=path), "binary", 2)
    assert _same(model.encoder.state_dict(), donor.encoder.state_dict())
    assert not torch.equal(
        model.decoder.state_dict()["blocks.0.conv1.0.weight"],
        donor.decoder.state_dict()["blocks.0.conv1.0.weight"],
    )


def test_backbone_weights_from_a_full_checkpoint_of_the_same_architecture(tmp_path: Path) -> None:
    torch.manual_seed(0)
    donor = build_model(ModelConfig(**TINY_UNET), "semantic", 4)  # other task, other head size
    path = tmp_path / "full.pt"
    torch.save({"model": donor.state_dict()}, path)
    model = build_model(ModelConfig(**TINY_UNET, backbone_weights=path), "semantic", 7)
    assert _same(model.encoder.state_dict(), donor.encoder.state_dict())


def test_imagenet_classifier_files_load_as_backbones(tmp_path: Path) -> None:
    """ImageNet-style files (torchvision layout, with their 1000-class heads) for each family."""
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None)
    resnet_file = tmp_path / "resnet18_imagenet.pt"
    torch.save(resnet.state_dict(), resnet_file)

    classifier = build_model(ModelConfig(name="resnet18", backbone_weights=resnet_file), "classification", 3)
    assert torch.equal(classifier.layer4[1].conv2.weight, resnet.layer4[1].conv2.weight)
    assert classifier.fc.out_features == 3  # the head is the task's, untouched

    unet = build_model(ModelConfig(**TINY_UNET, backbone_weights=resnet_file), "semantic", 3)
    assert torch.equal(unet.encoder.layer1[0].conv1.weight, resnet.layer1[0].conv1.weight)

    maskrcnn = build_model(
        ModelConfig(name="maskrcnn_resnet18_fpn", backbone_weights=resnet_file), "instance", 3
    )
    body = maskrcnn.backbone.body
    assert torch.equal(body.layer3[0].conv1.weight, resnet.layer3[0].conv1.weight)
    assert torch.equal(body.bn1.running_var, resnet.bn1.running_var)

    mobilenet = torchvision.models.mobilenet_v3_large(weights=None)
    mobilenet_file = tmp_path / "mobilenet_v3_large_imagenet.safetensors"
    save_file(mobilenet.state_dict(), str(mobilenet_file))
    frcnn = build_model(
        ModelConfig(name="fasterrcnn_mobilenet_v3_large_fpn", backbone_weights=mobilenet_file), "detection", 3
    )
    assert torch.equal(frcnn.backbone.body["16"][0].weight, mobilenet.features[16][0].weight)
    mbv3 = build_model(
        ModelConfig(name="mobilenet_v3_large", backbone_weights=mobilenet_file), "classification", 3
    )
    assert torch.equal(mbv3.features[3].block[0][0].weight, mobilenet.features[3].block[0][0].weight)


def test_backbone_weights_of_another_architecture_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "resnet50.pt"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match=r"into encoder.*shape mismatches: .*layer1\.0\.conv1\.weight"):
        build_model(ModelConfig(**TINY_UNET, backbone_weights=path), "semantic", 3)
