"""The front door of ``segpipe inspect``: a model from a job config (untrained) or a run (trained) →
layer table, first-layer filter grid and, for an image, feature maps.

    subject = from_config(load("configs/x.yaml"))        # or: from_run("runs/exp")
    result = inspect_model(subject, image="cat.jpg", out_dir="inspect/")

The image is first brought to the model's input exactly as in prediction (the job's evaluation
transform at ``train.image_size``: resize for classification, letterbox for the other tasks), so the
feature maps show what the network sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from segpipe.config import JobConfig
from segpipe.data.augment import build_transform
from segpipe.data.images import read_image
from segpipe.data.sample import Sample
from segpipe.errors import ConfigError
from segpipe.inspection.activations import FeatureMaps, save_feature_maps
from segpipe.inspection.filters import FilterGrid, save_filter_grid
from segpipe.inspection.layers import LayerTable, layer_table
from segpipe.models import build_model, get_adapter
from segpipe.models.adapter import TaskAdapter
from segpipe.task_kinds import traits
from segpipe.vocabulary import IGNORE_INDEX

FILTER_FILE = "filters.png"


@dataclass
class Inspectable:
    """A built model with what inspecting it needs: its adapter and job config, where it came from
    (``source``, for people) and notes on assumptions made while building it."""

    model: nn.Module
    adapter: TaskAdapter
    config: JobConfig
    num_labels: int
    source: str
    trained: bool
    notes: list[str] = field(default_factory=list)


@dataclass
class Inspection:
    """What ``inspect_model`` found and wrote. ``image_size``: side of the square model input used."""

    model_name: str
    task: str
    num_labels: int
    source: str
    trained: bool
    image_size: int
    table: LayerTable
    filter_grid: FilterGrid | None = None
    feature_maps: list[FeatureMaps] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def from_config(config: JobConfig, num_labels: int | None = None, source: str = "job config") -> Inspectable:
    """Build the config's model with random weights (or the local weights files the config names).

    `num_labels` None: counted from ``data.classes`` / ``data.categories`` when the config lists them,
    else 2 (noted in ``notes``); only the last layer depends on it.
    """
    notes = []
    if num_labels is None:
        num_labels, how = default_num_labels(config)
        if how:
            notes.append(how)
    model = build_model(config.model, config.task, num_labels)
    trained = config.model.weights is not None
    init = f"weights from {config.model.weights}" if trained else "random init"
    if config.model.backbone_weights is not None and not trained:
        init = f"backbone weights from {config.model.backbone_weights}, rest random"
    ignore = config.data.ignore_index if config.data else IGNORE_INDEX
    adapter = get_adapter(config.task, num_labels=num_labels, in_channels=config.model.in_channels,
                          ignore_index=ignore)
    return Inspectable(model, adapter, config, num_labels, f"{source} ({init})", trained, notes)


def from_run(model_ref: str | Path, device: str = "cpu") -> Inspectable:
    """A trained model from a run directory (best.pt, else last.pt) or a checkpoint file."""
    from segpipe.engine.predict import load_model  # the engine pulls in training code; only this path needs it

    loaded = load_model(model_ref, device=device)
    return Inspectable(loaded.model, loaded.adapter, loaded.config, loaded.category_map.num_labels,
                       str(loaded.checkpoint), trained=True)


def default_num_labels(config: JobConfig) -> tuple[int, str]:
    """(num_labels as CategoryMap would count them, a note when it had to be assumed — else "")."""
    data = config.data
    kind = traits(config.task)
    if kind.single_foreground:
        return 2, ""
    if data is not None and data.classes:
        return len(data.classes), ""  # mask-folder class names include background at pixel value 0
    if data is not None and data.categories:
        return len(data.categories) + kind.label_offset, ""
    return 2, "num_labels=2 assumed (the config lists no categories); it only changes the last layer"


def inspect_model(
    subject: Inspectable,
    *,
    image: str | Path | np.ndarray | None = None,
    layers: Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    depth: int | None = None,
    image_size: int | None = None,
    max_channels: int = 16,
) -> Inspection:
    """Layer table at a 1×C×S×S input (S = `image_size`, default the job's ``train.image_size``);
    with `out_dir`, the first conv layer's filters as ``filters.png``; with `image` (a path or an
    H×W×3 uint8 RGB array) also ``input.png`` and one feature-map PNG per layer of `layers`
    (default: a few evenly spaced conv layers).

    Raises ConfigError (bad size / depth / layer names, an image without `out_dir`, a model that cannot
    run at that size) or DataError (an unreadable image).
    """
    config = subject.config
    size = image_size if image_size is not None else config.train.image_size
    if size < 1:
        raise ConfigError(f"image size must be positive, got {size}")
    if layers and image is None:
        raise ConfigError(f"layers {', '.join(layers)}: feature maps are drawn for an image; none was given")
    if image is not None and out_dir is None:
        raise ConfigError("feature maps are written as PNG files: give an output folder")
    table = layer_table(subject.model, (1, config.model.in_channels, size, size), depth=depth)
    result = Inspection(config.model.name, config.task, subject.num_labels, subject.source, subject.trained,
                        size, table, notes=list(subject.notes))
    if table.scope:
        result.notes.append(
            f"detector: the table covers {table.scope} ({table.total_params:,} of {table.model_params:,} "
            f"parameters) at {size}×{size}; when predicting, the model first resizes images itself (min_size)"
        )
    if out_dir is None:
        return result
    out = Path(out_dir)
    result.filter_grid = save_filter_grid(subject.model, out / FILTER_FILE)
    if image is not None:
        model_input = model_input_image(config, image, size)
        result.feature_maps = save_feature_maps(subject.model, subject.adapter, model_input, layers, out,
                                                max_channels=max_channels)
    return result


def model_input_image(config: JobConfig, image: str | Path | np.ndarray, size: int) -> np.ndarray:
    """The image as the model takes it: the job's evaluation transform at `size` (H×W×3 uint8 RGB)."""
    array = read_image(image) if isinstance(image, (str, Path)) else image
    ignore = config.data.ignore_index if config.data else IGNORE_INDEX
    transform = build_transform(config.augment, config.task, size, train=False, ignore_index=ignore)
    return transform(Sample(image=array, image_id="inspect")).image
