"""Feature maps: what chosen layers output for one image, as one PNG grid per layer.

The image goes through the task adapter exactly as in prediction (``adapter.prepare``: uint8 →
normalised float on the model's device) and the model's own forward; hooks catch the chosen layers'
outputs. For torchvision detectors the model's ``transform`` (resize to ``min_size``, normalise) and
``backbone`` run, the heads do not (see ``scope.py``). Each channel is min–max normalised on its own
and drawn with the viridis map (dark = low, yellow = high); a channel that is constant (a ReLU that
never fired) is drawn dark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segpipe.errors import ConfigError, DataError
from segpipe.inspection import grids
from segpipe.inspection.layers import format_shape
from segpipe.inspection.scope import (
    evaluating,
    full_name,
    hooked,
    is_detector,
    model_device,
    run_forward,
    scope_module,
    scope_prefix,
)
from segpipe.models.adapter import TaskAdapter

MIN_TILE = 64
MAX_TILE = 160
DEFAULT_LAYER_COUNT = 4
INPUT_FILE = "input.png"


@dataclass(frozen=True)
class FeatureMaps:
    """One written feature-map grid: the layer, its output shape (B×C×H×W), channels drawn, the PNG."""

    layer: str
    path: Path
    output_shape: tuple[int, ...]
    channels_shown: int


def conv_layer_names(model: nn.Module) -> list[str]:
    """Full names of the Conv2d layers in the inspected scope, in registration order."""
    prefix = scope_prefix(model)
    return [full_name(prefix, n) for n, m in scope_module(model).named_modules() if isinstance(m, nn.Conv2d)]


def default_layers(model: nn.Module, count: int = DEFAULT_LAYER_COUNT) -> list[str]:
    """`count` conv layers evenly spaced from the first to the last (all of them when there are fewer)."""
    names = conv_layer_names(model)
    if len(names) <= count:
        return names
    picks = sorted({round(i * (len(names) - 1) / (count - 1)) for i in range(count)})
    return [names[i] for i in picks]


def resolve_layers(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """Name → module for `names` (any module of the inspected scope; conv layers are the usual pick).

    ConfigError listing the conv layer names when a name is unknown.
    """
    prefix = scope_prefix(model)
    modules = {full_name(prefix, n): m for n, m in scope_module(model).named_modules() if n}
    unknown = [n for n in names if n not in modules]
    if unknown:
        options = ", ".join(conv_layer_names(model)) or "(none)"
        raise ConfigError(
            f"unknown layer(s) {', '.join(repr(n) for n in unknown)} in {type(model).__name__}; "
            f"conv layers: {options} (any name from the layer table works too)"
        )
    if not names:
        raise ConfigError("no layers to show: give at least one layer name")
    return {n: modules[n] for n in names}


def save_feature_maps(
    model: nn.Module,
    adapter: TaskAdapter,
    image: np.ndarray,
    layer_names: Sequence[str] | None,
    out_dir: str | Path,
    max_channels: int = 16,
) -> list[FeatureMaps]:
    """Run `image` (H×W×3 uint8 RGB, already at the size the model takes) through `model` and write
    the first `max_channels` channels of each layer's output as ``NN_<layer>.png`` in `out_dir`,
    plus the image itself as ``input.png``. `layer_names` None: ``default_layers``.

    Raises ConfigError for unknown layer names, a layer whose output is not B×C×H×W, or a model that
    cannot run the image; DataError for an image that is not H×W×3 uint8.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"feature maps need an H×W×3 uint8 RGB image, got {image.shape} {image.dtype}")
    if max_channels < 1:
        raise ConfigError(f"max_channels must be at least 1, got {max_channels}")
    names = list(layer_names) if layer_names is not None else default_layers(model)
    modules = resolve_layers(model, names)
    outputs = _capture(model, adapter, image, modules)

    out_dir = Path(out_dir)
    grids.write_png(out_dir / INPUT_FILE, image)
    written = []
    for k, name in enumerate(names, start=1):
        output = outputs.get(name)
        if output is None:
            raise ConfigError(f"layer {name!r} did not run in the forward pass; nothing to show")
        if output.ndim != 4:
            raise ConfigError(f"layer {name!r} outputs {format_shape(output.shape)}, not B×C×H×W: no maps to draw")
        maps = output[0, :max_channels].float().cpu().numpy()
        tiles = [grids.fit_tile(grids.colourise(grids.normalise(m, constant=0)), MIN_TILE, MAX_TILE) for m in maps]
        caption = f"{name}: {format_shape(output.shape).replace('×', 'x')}, channels 0-{len(tiles) - 1}"
        path = grids.write_png(out_dir / f"{k:02d}_{name}.png", grids.grid(tiles, caption=caption))
        written.append(FeatureMaps(name, path, tuple(output.shape), len(tiles)))
    return written


def _capture(model: nn.Module, adapter: TaskAdapter, image: np.ndarray,
             modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Layer name → its output (first call) for one image through the adapter and the model."""
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str, _module: nn.Module, _inputs: tuple, output: Any) -> None:
        if name not in outputs and isinstance(output, torch.Tensor):
            # a copy: the next layer may be an in-place ReLU that would overwrite this output
            outputs[name] = output.detach().clone()

    device = model_device(model)
    chw = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    batch_images: Any = [chw] if is_detector(model) else chw[None]
    batch = {"images": batch_images, "image_ids": ["inspect"], "meta": [{}]}
    with evaluating(model), hooked(modules, keep):
        prepared = adapter.prepare(batch, device)
        if is_detector(model):
            detector: Any = model  # torchvision's GeneralizedRCNN, untyped
            # a torchvision detector: its own resize + normalise, then the backbone
            run_forward(f"{type(model).__name__} backbone",
                        lambda: detector.backbone(detector.transform(prepared["images"])[0].tensors))
        else:
            run_forward(type(model).__name__, lambda: adapter.forward_logits(model, prepared))
    return outputs
