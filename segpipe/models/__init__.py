"""Models and task adapters.

- ``build_model(cfg.model, task, num_labels)``: the one front door to every model (``MODELS`` registry;
  ``describe_models()`` lists them), offline weights loaded after building (``weights.py``);
- ``get_adapter(task, num_labels=...)``: the TaskAdapter that turns batches into losses and predictions.

Importing this package registers every builder (classify, segment, detect).
"""

from segpipe.models import classify, detect, segment  # noqa: F401  (register the builders)
from segpipe.models.registry import (
    MODELS,
    BuildContext,
    ModelSpec,
    Params,
    build_model,
    describe_models,
    model_spec,
    register_model,
)
from segpipe.models.tasks import ADAPTERS, TaskAdapter, adapter_class, get_adapter
from segpipe.models.weights import BackboneSpec, load_backbone_weights, load_weights, read_state_dict

__all__ = [
    "ADAPTERS",
    "MODELS",
    "BackboneSpec",
    "BuildContext",
    "ModelSpec",
    "Params",
    "TaskAdapter",
    "adapter_class",
    "build_model",
    "describe_models",
    "get_adapter",
    "load_backbone_weights",
    "load_weights",
    "model_spec",
    "read_state_dict",
    "register_model",
]
