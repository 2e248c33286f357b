"""Fine-tuning controls for every family: trainable backbone stages, frozen batch norm, backbone lr."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from segpipe.config import ModelConfig, TrainConfig
from segpipe.engine.train import build_optimizer
from segpipe.errors import ConfigError
from segpipe.models import build_model, model_spec
from segpipe.models.finetune import backbone_parameters, backbone_stages

TINY_UNET = {"name": "unet", "encoder_depth": 3, "decoder_channels": [8, 8, 8]}


def _trainable(model: nn.Module, prefix: str) -> bool:
    return all(p.requires_grad for n, p in model.named_parameters() if n.startswith(prefix))


def _frozen(model: nn.Module, prefix: str) -> bool:
    return not any(p.requires_grad for n, p in model.named_parameters() if n.startswith(prefix))


def test_resnet_classifier_trains_its_top_stages_only() -> None:
    model = build_model(ModelConfig(name="resnet18", trainable_backbone_layers=2), "classification", 3)
    assert [s[0] for s in backbone_stages(model, model_spec("resnet18").backbone)] == [
        "conv1.", "layer1.", "layer2.", "layer3.", "layer4."]
    assert _frozen(model, "conv1.") and _frozen(model, "bn1.") and _frozen(model, "layer2.")
    assert _trainable(model, "layer3.") and _trainable(model, "layer4.") and _trainable(model, "fc.")


def test_smp_encoder_and_small_cnn_and_mobilenet_stages() -> None:
    unet = build_model(ModelConfig(**TINY_UNET, trainable_backbone_layers=0), "binary", 2)
    assert _frozen(unet, "encoder.") and _trainable(unet, "decoder.") and _trainable(unet, "segmentation_head.")
    cnn = build_model(ModelConfig(name="cnn_small", channels=[4, 8, 8], hidden=8, trainable_backbone_layers=1),
                      "classification", 2)
    assert _frozen(cnn, "features.0.") and _frozen(cnn, "features.3.") and _trainable(cnn, "features.6.")
    mobile = build_model(ModelConfig(name="mobilenet_v3_small", trainable_backbone_layers=3), "classification", 2)
    stages = backbone_stages(mobile, model_spec("mobilenet_v3_small").backbone)
    assert _trainable(mobile, stages[-3][0]) and _frozen(mobile, stages[-4][0]) and _trainable(mobile, "classifier.")


def test_too_many_trainable_layers_names_the_stages() -> None:
    with pytest.raises(ConfigError, match=r"trainable_backbone_layers=9: model 'resnet18' has 5 backbone stages"):
        build_model(ModelConfig(name="resnet18", trainable_backbone_layers=9), "classification", 3)
    with pytest.raises(ConfigError, match=r"has 5 backbone stages; use 0–5"):
        build_model(ModelConfig(name="maskrcnn_resnet18_fpn", trainable_backbone_layers=6), "instance", 3)


def test_batch_norm_is_frozen_in_the_pretrained_part_only(tmp_path: Path) -> None:
    path = tmp_path / "unet.pt"
    donor = build_model(ModelConfig(**TINY_UNET), "semantic", 4)
    with torch.no_grad():
        donor.encoder.bn1.running_mean.fill_(0.5)
    torch.save(donor.state_dict(), path)
    tuned = build_model(ModelConfig(**TINY_UNET, weights=str(path)), "binary", 2)
    assert isinstance(tuned.encoder.bn1, FrozenBatchNorm2d)
    assert torch.all(tuned.encoder.bn1.running_mean == 0.5)  # the loaded statistics, kept
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in tuned.decoder.modules())
    tuned.train()
    tuned(torch.rand(2, 3, 32, 32))
    assert torch.all(tuned.encoder.bn1.running_mean == 0.5)  # training does not move them
    plain = build_model(ModelConfig(**TINY_UNET, weights=str(path), freeze_batchnorm=False), "binary", 2)
    assert isinstance(plain.encoder.bn1, nn.BatchNorm2d)
    scratch = build_model(ModelConfig(**TINY_UNET), "binary", 2)
    assert isinstance(scratch.encoder.bn1, nn.BatchNorm2d)


def test_backbone_learns_at_a_fraction_of_the_learning_rate() -> None:
    model = build_model(ModelConfig(**TINY_UNET), "binary", 2)
    backbone = backbone_parameters(model, model_spec("unet").backbone)
    assert backbone and all(n.startswith("encoder.") for n in backbone)
    optimizer = build_optimizer(model, TrainConfig(lr=1e-3, backbone_lr_mult=0.1), backbone=backbone)
    by_id = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        names = [by_id[id(p)] for p in group["params"]]
        expected = 1e-4 if names[0].startswith("encoder.") else 1e-3
        assert group["lr"] == pytest.approx(expected)
        assert all(n.startswith("encoder.") == names[0].startswith("encoder.") for n in names)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    assert len(build_optimizer(model, TrainConfig(lr=1e-3), backbone=backbone).param_groups) == 2  # as before
