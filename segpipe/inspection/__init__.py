"""What a CNN sees: ``segpipe inspect``.

- ``layer_table(model, (B, C, H, W), depth=None)``: every layer call of one forward pass, in order —
  kind, kernel / stride / padding, output shape, parameters — with conv and pool output sizes worked
  out as ``O = (W − K + 2P)/S + 1`` and checked against the real shapes (``layers.py``,
  ``arithmetic.py``);
- ``save_filter_grid(model, path)``: the first conv layer's filters as a PNG grid (``filters.py``);
- ``save_feature_maps(model, adapter, image, layer_names, out_dir)``: chosen layers' activations for
  one image, one PNG per layer (``activations.py``);
- ``from_config`` / ``from_run`` + ``inspect_model``: the entry point the CLI calls (``report.py``).

torchvision detectors (Mask / Faster R-CNN) are inspected through their backbone (``scope.py``).
"""

from segpipe.inspection.activations import FeatureMaps, conv_layer_names, default_layers, save_feature_maps
from segpipe.inspection.filters import FilterGrid, first_conv, save_filter_grid
from segpipe.inspection.layers import (
    COLUMNS,
    LayerRow,
    LayerTable,
    display_rows,
    format_pair,
    format_shape,
    layer_table,
)
from segpipe.inspection.report import Inspectable, Inspection, from_config, from_run, inspect_model

__all__ = [
    "COLUMNS",
    "FeatureMaps",
    "FilterGrid",
    "Inspectable",
    "Inspection",
    "LayerRow",
    "LayerTable",
    "conv_layer_names",
    "default_layers",
    "display_rows",
    "first_conv",
    "format_pair",
    "format_shape",
    "from_config",
    "from_run",
    "inspect_model",
    "layer_table",
    "save_feature_maps",
    "save_filter_grid",
]
