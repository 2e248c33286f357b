"""The layer table on the models segpipe builds: shapes, arithmetic, parameter counts, depth."""

import pytest
import torch
from torch import nn

from segpipe.config import ModelConfig
from segpipe.errors import ConfigError
from segpipe.inspection.layers import format_pair, layer_table
from segpipe.models import build_model


def cnn_small() -> nn.Module:
    return build_model(ModelConfig(name="cnn_small"), "classification", 3)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("size", "sizes_after_pools"),
    [(32, [16, 8, 4]), (28, [14, 7, 4])],  # 7 → 4: cnn_small pools with ceil_mode
)
def test_cnn_small_arithmetic_matches_real_shapes(size: int, sizes_after_pools: list[int]) -> None:
    model = cnn_small()
    table = layer_table(model, (1, 3, size, size))
    conv_pool = [r for r in table.rows if r.kind in ("Conv2d", "MaxPool2d")]
    assert len(conv_pool) == 6
    assert all(r.matches for r in conv_pool) and not table.mismatches
    for r in conv_pool:
        assert r.expected == tuple(r.output_shape[-2:])
        assert r.arithmetic.endswith(f"= {r.output_shape[-1]}")
    first = conv_pool[0]
    assert (first.name, first.kernel, first.stride, first.padding) == ("features.0", (3, 3), (1, 1), (1, 1))
    assert first.arithmetic == f"({size} − 3 + 2·1)/1 + 1 = {size}"
    assert first.input_shape == (1, 3, size, size) and first.output_shape == (1, 32, size, size)
    assert [r.output_shape[-1] for r in conv_pool if r.kind == "MaxPool2d"] == sizes_after_pools
    # the shapes chain: each row's input is the previous row's output
    for prev, row in zip(table.rows, table.rows[1:], strict=False):
        assert row.input_shape == prev.output_shape
    assert table.rows[-1].output_shape == (1, 3)
    assert all(r.arithmetic is None for r in table.rows if r.kind not in ("Conv2d", "MaxPool2d"))


def test_parameter_totals() -> None:
    model = cnn_small()
    model.classifier[2].requires_grad_(False)
    table = layer_table(model, (1, 3, 32, 32))
    assert table.total_params == table.model_params == n_params(model)
    assert sum(r.params for r in table.rows) == n_params(model)  # every parameter sits on exactly one row
    frozen = sum(p.numel() for p in model.classifier[2].parameters())
    assert table.trainable_params == sum(r.trainable for r in table.rows) == n_params(model) - frozen
    assert {r.name: r.params for r in table.rows}["features.0"] == 3 * 32 * 9 + 32
    assert table.unlisted == {}


def test_depth_collapses_containers() -> None:
    model = cnn_small()
    table = layer_table(model, (1, 3, 32, 32), depth=1)
    assert [(r.name, r.kind) for r in table.rows] == [("features", "Sequential"), ("classifier", "Sequential")]
    assert table.rows[0].output_shape == (1, 128, 4, 4)
    assert table.rows[0].params == n_params(model.features)
    assert sum(r.params for r in table.rows) == n_params(model)


def test_reused_module_and_shared_weights_count_once() -> None:
    relu, conv = nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), relu, conv, relu, conv)  # the same conv twice
    table = layer_table(model, (1, 3, 8, 8))
    assert [(r.name, r.call) for r in table.rows] == [("0", 1), ("1", 1), ("2", 1), ("1", 2), ("2", 2)]
    assert [r.params for r in table.rows] == [16, 0, 148, 0, 0]
    assert table.total_params == sum(r.params for r in table.rows) == n_params(model)


def test_parameters_outside_rows_are_listed() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.unused = nn.Linear(2, 2)
            self.gain = nn.Parameter(torch.ones(2, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x) * self.gain

    model = Scaled()
    table = layer_table(model, (1, 3, 8, 8))
    assert [r.name for r in table.rows] == ["conv"]
    assert table.unlisted == {"unused": 6, "(model)": 2}
    assert sum(r.params for r in table.rows) + sum(table.unlisted.values()) == table.total_params == n_params(model)


def test_resnet18_table() -> None:
    model = build_model(ModelConfig(name="resnet18"), "classification", 4)
    table = layer_table(model, (1, 3, 64, 64))
    rows = {r.name: r for r in table.rows if r.call == 1}
    assert rows["conv1"].arithmetic == "⌊(64 − 7 + 2·3)/2⌋ + 1 = 32"
    assert rows["maxpool"].output_shape == (1, 64, 16, 16)
    assert rows["layer4.0.downsample.0"].output_shape == (1, 512, 2, 2)
    assert [r.call for r in table.rows if r.name == "layer1.0.relu"] == [1, 2]  # torchvision reuses its ReLU
    assert not table.mismatches and sum(r.matches is True for r in table.rows) == 17 + 3 + 1  # convs, downsample convs, pool
    assert table.total_params == sum(r.params for r in table.rows) == n_params(model)
    assert table.rows[-1].output_shape == (1, 4)


def test_smp_unet_table() -> None:
    model = build_model(ModelConfig(name="unet", encoder="resnet18"), "semantic", 3)
    table = layer_table(model, (1, 3, 64, 64))
    assert not table.mismatches
    assert table.rows[0].name == "encoder.conv1"
    assert table.rows[-1].output_shape == (1, 3, 64, 64)
    assert all(r.kind != "Identity" for r in table.rows)
    assert table.total_params == sum(r.params for r in table.rows) == n_params(model)
    decoder = [r for r in table.rows if r.name.startswith("decoder.") and r.kind == "Conv2d"]
    assert decoder and decoder[0].input_shape[-1] == 4  # the upsampled 2×2 bottleneck, seen by the hook

    # depth 2: decoder.blocks is a ModuleList, never called itself, so its blocks stand in for it
    blocks = layer_table(model, (1, 3, 64, 64), depth=2)
    names = [r.name for r in blocks.rows]
    assert names[4:13] == [f"encoder.layer{i}" for i in range(1, 5)] + [f"decoder.blocks.{i}" for i in range(5)]
    assert [r.output_shape[-1] for r in blocks.rows[8:13]] == [4, 8, 16, 32, 64]
    assert blocks.unlisted == {} and sum(r.params for r in blocks.rows) == n_params(model)


def test_mask_rcnn_is_inspected_through_its_backbone() -> None:
    model = build_model(ModelConfig(name="maskrcnn_resnet18_fpn"), "instance", 3)
    table = layer_table(model, (1, 3, 64, 64))
    assert table.scope == "backbone"
    assert all(r.name.startswith(("backbone.body.", "backbone.fpn.")) for r in table.rows)
    assert table.total_params == n_params(model.backbone) < table.model_params == n_params(model)
    assert not table.mismatches


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match=r"4 positive sizes"):
        layer_table(cnn_small(), (3, 32, 32))
    with pytest.raises(ConfigError, match="depth must be at least 1"):
        layer_table(cnn_small(), (1, 3, 32, 32), depth=0)
    with pytest.raises(ConfigError, match=r"FPN on input 1×3×40×40: forward pass failed: .*divisible by 32"):
        layer_table(build_model(ModelConfig(name="fpn"), "semantic", 2), (1, 3, 40, 40))
    with pytest.raises(ConfigError, match=r"SmallCNN on input 1×1×32×32: forward pass failed"):
        layer_table(cnn_small(), (1, 1, 32, 32))  # the model takes 3 channels


def test_model_modes_are_restored() -> None:
    model = cnn_small()
    model.train()
    model.classifier[1].eval()
    layer_table(model, (1, 3, 32, 32))
    assert model.training and model.features[0].training and not model.classifier[1].training


def test_format_pair() -> None:
    assert [format_pair(p) for p in ((3, 3), (3, 1), "same", None)] == ["3", "3×1", "same", ""]
