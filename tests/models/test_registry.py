"""build_model's front door: names, params, tasks, label counts, input channels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torchvision.models import detection
from torchvision.ops.misc import FrozenBatchNorm2d

from segpipe.config import ModelConfig
from segpipe.errors import ConfigError
from segpipe.models import MODELS, build_model, describe_models, get_adapter
from tests.models.synth import batch_for

DENSE_AND_CLASSIFIERS = [
    (e.name, t) for e in MODELS for t in sorted(e.tags) if t in ("classification", "semantic")
]
RCNN = [e.name for e in MODELS if e.tags & {"instance", "detection"}]


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as e:
        build_model(ModelConfig(name="unet3d"), "semantic", 3)
    assert "'unet3d'" in str(e.value) and "unet, unetplusplus" in str(e.value) and "cnn_small" in str(e.value)


def test_unknown_param_names_it_and_lists_allowed_keys() -> None:
    with pytest.raises(ConfigError) as e:
        build_model(ModelConfig(name="unet", encoder="resnet18", dropuot=0.1), "semantic", 3)
    msg = str(e.value)
    assert "model.dropuot: unknown parameter for model 'unet'" in msg
    assert "allowed: encoder, encoder_depth, decoder_channels, decoder_attention_type" in msg
    assert "in_channels" in msg  # the keys every model takes are mentioned too


def test_bad_param_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"model\.encoder_depth: .*got 9"):
        build_model(ModelConfig(name="unet", encoder_depth=9), "binary", 2)
    with pytest.raises(ConfigError, match=r"model\.encoder: unknown encoder 'resnet19'; known: .*resnet18"):
        build_model(ModelConfig(name="fpn", encoder="resnet19"), "binary", 2)
    with pytest.raises(ConfigError, match="decoder_channels has 2 entries, needs encoder_depth=3"):
        build_model(ModelConfig(name="unet", encoder_depth=3, decoder_channels=[8, 8]), "binary", 2)


def test_wrong_task_lists_the_models_that_do_it() -> None:
    with pytest.raises(ConfigError) as e:
        build_model(ModelConfig(name="unet"), "instance", 3)
    msg = str(e.value)
    assert "model 'unet' does not do task 'instance' (it does binary, semantic)" in msg
    assert (
        "models for instance: maskrcnn_resnet18_fpn, maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2" in msg
    )
    with pytest.raises(ConfigError, match="unknown task 'panoptic'"):
        build_model(ModelConfig(name="unet"), "panoptic", 3)


@pytest.mark.parametrize(
    ("task", "num_labels", "expected"),
    [
        ("binary", 3, "needs exactly 2 labels"),
        ("semantic", 1, "needs 2..255"),
        ("semantic", 256, "needs 2..255"),
        ("classification", 1, "at least 2"),
    ],
)
def test_label_counts_the_task_cannot_use(task: str, num_labels: int, expected: str) -> None:
    name = "cnn_small" if task == "classification" else "unet"
    with pytest.raises(ConfigError, match=expected):
        build_model(ModelConfig(name=name), task, num_labels)


def test_binary_models_have_one_output_channel() -> None:
    model = build_model(ModelConfig(name="unet", decoder_channels=[8, 8, 8, 8, 8]), "binary", 2).eval()
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)


@pytest.mark.parametrize(("name", "task"), DENSE_AND_CLASSIFIERS)
def test_grayscale_input(name: str, task: str) -> None:
    num_labels = 3
    model = build_model(ModelConfig(name=name, in_channels=1), task, num_labels).eval()
    adapter = get_adapter(task, num_labels=num_labels, in_channels=1)
    batch = adapter.prepare(batch_for(task, num_labels, size=(32, 32)), "cpu")
    assert batch["images"].shape[1] == 1
    (prediction, *_) = adapter.predict(model, batch)
    assert prediction.height == 32


@pytest.mark.parametrize("name", RCNN)
def test_detection_models_refuse_other_channel_counts(name: str) -> None:
    task = next(iter(MODELS.entry(name).tags))
    with pytest.raises(ConfigError, match=r"3-channel RGB input only.*in_channels=1"):
        build_model(ModelConfig(name=name, in_channels=1), task, 3)


def test_describe_models_lists_every_model_with_its_tasks() -> None:
    rows = describe_models()
    assert [r[0] for r in rows] == MODELS.names()
    table = {name: tasks for name, tasks, _ in rows}
    assert table["unet"] == ("binary", "semantic") and table["maskrcnn_resnet18_fpn"] == ("instance",)
    assert all(description for _, _, description in rows)


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("maskrcnn_resnet50_fpn", detection.maskrcnn_resnet50_fpn),
        ("fasterrcnn_mobilenet_v3_large_fpn", detection.fasterrcnn_mobilenet_v3_large_fpn),
    ],
)
def test_state_dicts_match_torchvision(name: str, reference: Callable[..., torch.nn.Module]) -> None:
    """torchvision's own checkpoints of these models load through model.weights."""
    task = next(iter(MODELS.entry(name).tags))
    ours = build_model(ModelConfig(name=name), task, 5)
    theirs = reference(weights=None, weights_backbone=None, num_classes=5)
    assert _shapes(ours) == _shapes(theirs)


def test_pretrained_detection_models_freeze_batch_norm_and_early_stages(tmp_path: Path) -> None:
    scratch = build_model(ModelConfig(name="maskrcnn_resnet18_fpn"), "instance", 3)
    assert all(p.requires_grad for p in scratch.parameters())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in scratch.modules())

    path = tmp_path / "scratch.pt"
    torch.save(scratch.state_dict(), path)
    tuned = build_model(ModelConfig(name="maskrcnn_resnet18_fpn", weights=path), "instance", 3)
    body = tuned.backbone.body
    assert any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    assert not body.conv1.weight.requires_grad and not body.layer1[0].conv1.weight.requires_grad
    assert body.layer2[0].conv1.weight.requires_grad and body.layer4[0].conv1.weight.requires_grad

    v2 = build_model(
        ModelConfig(name="fasterrcnn_resnet50_fpn_v2", trainable_backbone_layers=1), "detection", 3
    )
    assert not v2.backbone.body.layer3[0].conv1.weight.requires_grad
    assert v2.backbone.body.layer4[0].conv1.weight.requires_grad
