"""The first conv layer's filters as a picture: what the network looks for in raw pixels.

Each filter (out channel) is one tile, min–max normalised on its own. With 3 input channels a tile
is an RGB picture of the filter; with any other count (grayscale input, 4-band images, grouped
convs) a tile is that filter's input channels side by side in grayscale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from segpipe.errors import ConfigError
from segpipe.inspection import grids
from segpipe.inspection.scope import full_name, scope_module, scope_prefix

MIN_TILE = 48  # px: a 3×3 filter becomes 16-pixel blocks
MAX_TILE = 96
FILTER_GAP = 6  # px between filters, wider than the 1-px line between one filter's channels


@dataclass(frozen=True)
class FilterGrid:
    """A written filter grid: the layer it shows, its weight shape (out, in, kH, kW), the PNG's size."""

    path: Path
    layer: str
    weight_shape: tuple[int, int, int, int]
    rgb: bool
    image_size: tuple[int, int]  # (height, width) of the PNG


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """(full name, module) of the first Conv2d in the inspected scope, in registration order (the
    stem of every model segpipe builds). ConfigError when there is none."""
    prefix = scope_prefix(model)
    for name, module in scope_module(model).named_modules():
        if isinstance(module, nn.Conv2d):
            return full_name(prefix, name), module
    raise ConfigError(f"{type(model).__name__} has no Conv2d layer: no filters to show")


def filter_tiles(weight: np.ndarray, min_side: int = MIN_TILE, max_side: int = MAX_TILE) -> tuple[list[np.ndarray], bool]:
    """uint8 tiles of an (out, in, kH, kW) weight, enlarged (nearest) so a kernel's longer side lies
    in [min_side, max_side], and whether they are RGB (see the module docstring)."""
    if weight.ndim != 4:
        raise ValueError(f"conv weight must be 4-D (out, in, kH, kW), got shape {weight.shape}")
    rgb = weight.shape[1] == 3
    tiles = []
    for f in weight:
        if rgb:
            tiles.append(grids.fit_tile(grids.normalise(np.transpose(f, (1, 2, 0))), min_side, max_side))
            continue
        # normalised together, so a channel the filter ignores shows flat next to a busy one; enlarged
        # one by one so the separator stays one pixel, thinner than the gap between filters
        scaled = grids.normalise(f)
        channels = [grids.fit_tile(c, min_side, max_side) for c in scaled]
        separator = np.full((channels[0].shape[0], 1), grids.GAP_VALUE, np.uint8)
        tiles.append(np.concatenate([x for c in channels for x in (c, separator)][:-1], axis=1))
    return tiles, rgb


def save_filter_grid(model: nn.Module, path: str | Path, max_filters: int = 64) -> FilterGrid:
    """Write the first conv layer's filters (the first `max_filters`) as a PNG grid at `path`."""
    layer, conv = first_conv(model)
    weight = conv.weight.detach().float().cpu().numpy()
    tiles, rgb = filter_tiles(weight[:max_filters])
    out, inp, kh, kw = weight.shape
    shown = f"first {len(tiles)} of {out}" if len(tiles) < out else str(out)
    colour = "RGB" if rgb else f"{inp} gray channel(s) side by side"
    caption = f"{layer}: {shown} filters {kh}x{kw}, {colour}"
    image = grids.grid(tiles, caption=caption, gap=FILTER_GAP)
    written = grids.write_png(path, image)
    return FilterGrid(written, layer, (out, inp, kh, kw), rgb, (image.shape[0], image.shape[1]))
