"""Feature-map PNGs: the right layer, the right channels, the input as the model saw it."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from segpipe.config import ModelConfig
from segpipe.errors import ConfigError, DataError
from segpipe.inspection import grids
from segpipe.inspection.activations import conv_layer_names, default_layers, save_feature_maps
from segpipe.models import build_model, get_adapter


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def shapes_image(h: int = 32, w: int = 32) -> np.ndarray:
    image = np.full((h, w, 3), (30, 80, 160), np.uint8)
    cv2.circle(image, (w // 3, h // 2), h // 4, (250, 220, 40), -1)
    cv2.rectangle(image, (w // 2 + 2, 4), (w - 4, h - 6), (200, 30, 30), -1)
    return image


def cnn_small() -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(name="cnn_small"), "classification", 3)


def test_feature_map_grids(tmp_path: Path) -> None:
    model, image = cnn_small(), shapes_image()
    adapter = get_adapter("classification", num_labels=3)
    written = save_feature_maps(model, adapter, image, None, tmp_path)

    assert [(f.layer, f.output_shape, f.channels_shown, f.path.name) for f in written] == [
        ("features.0", (1, 32, 32, 32), 16, "01_features.0.png"),
        ("features.3", (1, 64, 16, 16), 16, "02_features.3.png"),
        ("features.6", (1, 128, 8, 8), 16, "03_features.6.png"),
    ]
    assert (read_rgb(tmp_path / "input.png") == image).all()
    first = read_rgb(written[0].path)
    # 16 channels of 32×32, each enlarged 2× to 64 px, in a 4×4 grid under the caption
    side = 4 * (64 + grids.GAP) + grids.GAP
    assert first.shape[0] == grids.CAPTION_HEIGHT + side
    assert (first[grids.CAPTION_HEIGHT :, side:] == 255).all()  # a caption wider than the grid widens the image
    third = read_rgb(written[2].path)
    assert third.shape[0] == first.shape[0]  # 8×8 maps are enlarged 8× to the same 64 px

    # channel 1 of the first conv, computed by hand, is the second tile
    x = adapter.prepare({"images": torch.from_numpy(image).permute(2, 0, 1)[None]}, "cpu")["images"]
    with torch.no_grad():
        activation = model.features[0](x)[0, 1].numpy()
    expected = cv2.resize(grids.colourise(grids.normalise(activation, constant=0)), (64, 64),
                          interpolation=cv2.INTER_NEAREST)
    y, x0 = grids.CAPTION_HEIGHT + grids.GAP, grids.GAP + 64 + grids.GAP
    assert (first[y : y + 64, x0 : x0 + 64] == expected).all()


def test_chosen_layers_and_channel_count(tmp_path: Path) -> None:
    model = cnn_small()
    written = save_feature_maps(model, get_adapter("classification", num_labels=3), shapes_image(), ["features.4"],
                                tmp_path, max_channels=4)
    assert [(f.layer, f.channels_shown, f.path.name) for f in written] == [("features.4", 4, "01_features.4.png")]
    assert read_rgb(written[0].path).shape[0] == grids.CAPTION_HEIGHT + 2 * (64 + grids.GAP) + grids.GAP


def test_unknown_layer_lists_the_conv_layers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        save_feature_maps(cnn_small(), get_adapter("classification", num_labels=3), shapes_image(),
                          ["features.0", "conv9"], tmp_path)
    assert str(e.value).startswith("unknown layer(s) 'conv9' in SmallCNN; conv layers: features.0, features.3, features.6")
    assert not (tmp_path / "input.png").exists()  # nothing written before the names are checked


def test_layer_without_maps(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'classifier.2' outputs 1×256, not B×C×H×W"):
        save_feature_maps(cnn_small(), get_adapter("classification", num_labels=3), shapes_image(), ["classifier.2"],
                          tmp_path)


def test_bad_image(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="H×W×3 uint8"):
        save_feature_maps(cnn_small(), get_adapter("classification", num_labels=3),
                          np.zeros((32, 32), np.uint8), None, tmp_path)


def test_default_layers_are_evenly_spaced() -> None:
    model = build_model(ModelConfig(name="resnet18"), "classification", 2)
    names = conv_layer_names(model)
    assert len(names) == 20 and names[0] == "conv1"
    assert default_layers(model) == [names[0], names[6], names[13], names[19]]


def test_detector_maps_come_from_its_backbone(tmp_path: Path) -> None:
    model = build_model(ModelConfig(name="maskrcnn_resnet18_fpn", min_size=64, max_size=64), "instance", 2)
    adapter = get_adapter("instance", num_labels=2)
    model.train()
    layers = ["backbone.body.conv1", "backbone.fpn.layer_blocks.0.0"]
    written = save_feature_maps(model, adapter, shapes_image(48, 48), layers, tmp_path, max_channels=2)
    # the model's own transform resizes 48 → 64 first (min_size), then the stem halves it
    assert [f.output_shape for f in written] == [(1, 64, 32, 32), (1, 256, 16, 16)]
    assert all(m.training for m in model.modules())  # ran in eval mode, train mode restored
