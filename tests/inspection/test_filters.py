"""First-layer filter grids: layout, colours, upscaling, grayscale inputs."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from segpipe.config import ModelConfig
from segpipe.errors import ConfigError
from segpipe.inspection.filters import FILTER_GAP, first_conv, save_filter_grid
from segpipe.inspection.grids import CAPTION_HEIGHT
from segpipe.models import build_model

RED = (255, 0, 0)


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def cnn_small(in_channels: int = 3) -> nn.Module:
    return build_model(ModelConfig(name="cnn_small", in_channels=in_channels), "classification", 2)


def test_rgb_filter_grid(tmp_path: Path) -> None:
    model = cnn_small()
    with torch.no_grad():
        model.features[0].weight[0] = 0.0
        model.features[0].weight[0, 0, 0, :] = 1.0  # filter 0: red top row, nothing else
    grid = save_filter_grid(model, tmp_path / "sub" / "filters.png")

    image = read_rgb(grid.path)
    # 32 filters of 3×3, each 16× enlarged to 48 px, 6 per row, 6 px apart, under a caption band
    assert (grid.layer, grid.weight_shape, grid.rgb) == ("features.0", (32, 3, 3, 3), True)
    assert image.shape == (CAPTION_HEIGHT + 6 * (48 + FILTER_GAP) + FILTER_GAP, 6 * (48 + FILTER_GAP) + FILTER_GAP, 3)
    assert grid.image_size == image.shape[:2]
    y, x = CAPTION_HEIGHT + FILTER_GAP, FILTER_GAP
    tile = image[y : y + 48, x : x + 48]
    assert (tile[:16] == RED).all() and (tile[16:] == 0).all()  # nearest: crisp 16-px blocks
    second = image[y : y + 48, x + 48 + FILTER_GAP : x + 96 + FILTER_GAP]
    assert second.min() == 0 and second.max() == 255  # each filter normalised on its own
    assert (image[y : y + 48, x + 48 : x + 48 + FILTER_GAP] == 255).all()  # white gap


def test_grayscale_filters_side_by_side(tmp_path: Path) -> None:
    model = cnn_small(in_channels=2)
    with torch.no_grad():
        model.features[0].weight[0] = 0.0
        model.features[0].weight[0, 1] = 2.0  # ignores channel 0, all-in on channel 1
    grid = save_filter_grid(model, tmp_path / "filters.png", max_filters=4)

    image = read_rgb(grid.path)
    assert not grid.rgb and grid.weight_shape == (32, 2, 3, 3)
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    tile_w = 2 * 48 + 1  # two enlarged channels and a 1-px separator
    assert image.shape[1] >= 2 * (tile_w + FILTER_GAP) + FILTER_GAP
    y, x = CAPTION_HEIGHT + FILTER_GAP, FILTER_GAP
    tile = image[y : y + 48, x : x + tile_w, 0]
    assert (tile[:, :48] == 0).all() and (tile[:, 48] == 255).all() and (tile[:, 49:] == 255).all()


def test_first_conv_of_each_family() -> None:
    assert first_conv(build_model(ModelConfig(name="resnet18"), "classification", 2))[0] == "conv1"
    assert first_conv(build_model(ModelConfig(name="unet"), "semantic", 2))[0] == "encoder.conv1"
    name, conv = first_conv(build_model(ModelConfig(name="maskrcnn_resnet18_fpn"), "instance", 2))
    assert name == "backbone.body.conv1" and conv.kernel_size == (7, 7)


def test_resnet_filters_are_enlarged_to_visible_size(tmp_path: Path) -> None:
    grid = save_filter_grid(build_model(ModelConfig(name="resnet18"), "classification", 2), tmp_path / "f.png")
    # 64 filters 7×7, ×7 → 49 px, 8 per row
    assert grid.image_size == (CAPTION_HEIGHT + 8 * (49 + FILTER_GAP) + FILTER_GAP, 8 * (49 + FILTER_GAP) + FILTER_GAP)


def test_model_without_conv() -> None:
    with pytest.raises(ConfigError, match="no Conv2d layer"):
        first_conv(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
