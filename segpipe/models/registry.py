"""The model registry: name → how to build it (its task kinds and own parameters: `segpipe.model_catalogue`).

A config's model section is ``{name, weights, backbone_weights, in_channels, **params}``. ``params``
are validated against the model's ``Params`` class (unknown keys are errors that list the allowed
ones), then the builder constructs the network with random weights, never downloading anything, and
the offline weights named in the config are loaded into it.

Builders live in ``classify.py``, ``segment.py`` and ``detect.py`` and register themselves with
``@register_model``; importing ``segpipe.models`` imports them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from segpipe.config import ModelConfig
from segpipe.model_catalogue import CATALOGUE, check_model_section
from segpipe.model_params import COMMON_KEYS, Params, parse_params
from segpipe.models.finetune import freeze_backbone_batchnorm, freeze_backbone_stages
from segpipe.models.tasks import adapter_class
from segpipe.models.transfer import HeadSpec, LoadReport, label_rows, transfer_weights
from segpipe.models.weights import BackboneSpec, load_backbone_weights, read_weights
from segpipe.registry import Registry

__all__ = ["COMMON_KEYS", "MODELS", "BuildContext", "ModelSpec", "Params", "build_model", "check_model",
           "describe_models", "model_spec", "parse_params", "register_model"]


@dataclass(frozen=True)
class BuildContext:
    """What a builder needs besides its own params.

    num_outputs: model outputs for the task (``TaskAdapter.outputs_for``: K labels, or 1 for binary).
    pretrained:  weights or backbone weights will be loaded after building (detection builders then
                 freeze batch norm and train fewer backbone layers by default, as torchvision does).
    trainable_backbone_layers / freeze_batchnorm: ``model.*`` as given (None: the family's default);
                 only builders with ``ModelSpec.own_freezing`` read them (R-CNN: torchvision's rule).
    """

    name: str
    task: str
    num_labels: int
    num_outputs: int
    in_channels: int
    pretrained: bool
    trainable_backbone_layers: int | None = None
    freeze_batchnorm: bool | None = None

    @property
    def frozen_batchnorm(self) -> bool:
        return self.pretrained if self.freeze_batchnorm is None else self.freeze_batchnorm


Builder = Callable[[Any, BuildContext], nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """builder + params; where backbone weights go; which layers depend on the class count (`heads`);
    own_freezing: the builder applies trainable_backbone_layers / frozen batch norm itself."""

    builder: Builder
    params: type[Params]
    backbone: BackboneSpec
    heads: HeadSpec = HeadSpec()
    own_freezing: bool = False


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(
    name: str,
    *,
    description: str,
    backbone: BackboneSpec,
    heads: HeadSpec = HeadSpec(),
    own_freezing: bool = False,
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(params, ctx) -> nn.Module`` under `name`, a model of the catalogue
    (`segpipe.model_catalogue`: its task kinds and its ``Params`` class come from there).

    heads: the class-dependent layers, re-initialised when ``model.weights`` has another class count."""
    if name not in CATALOGUE:
        raise ValueError(f"model {name!r} is not in segpipe.model_catalogue (its tasks and parameters)")
    entry = CATALOGUE.entry(name)

    def add(builder: Builder) -> Builder:
        spec = ModelSpec(builder, entry.obj.params, backbone, heads, own_freezing)
        MODELS.add(name, spec, description=description, tags=entry.tags)
        return builder

    return add


def build_model(cfg: ModelConfig, task: str, num_labels: int) -> nn.Module:
    """Build the model named by `cfg` for `task` with `num_labels` labels (CategoryMap.num_labels),
    then load ``cfg.backbone_weights`` into its backbone and ``cfg.weights`` into the whole model.

    Raises ConfigError (unknown model / parameter / task, bad label count) or WeightsError.
    """
    return build_model_reported(cfg, task, num_labels)[0]


def build_model_reported(
    cfg: ModelConfig, task: str, num_labels: int, category_map: Any = None
) -> tuple[nn.Module, LoadReport | None]:
    """`build_model`, plus the load report of ``cfg.weights`` (None without weights). With the run's
    `category_map` (a `CategoryMap`) and a segpipe checkpoint as weights, re-initialised heads keep the
    rows of the categories both know.

    ``cfg.weights`` must be a path here (a run directory, checkpoint or weights file); model-version
    references are resolved by the caller that holds the stores (``segpipe.jobs.model_refs``)."""
    spec, params = check_model(cfg, task)
    # Names (torchvision:…, smp:…) become checked files of the shared store, downloaded once.
    from segpipe.pretrained import resolve_named

    weights = resolve_named(cfg.weights, model=cfg.name, role="weights")
    backbone_weights = resolve_named(cfg.backbone_weights, model=cfg.name, role="backbone_weights")
    ctx = BuildContext(
        name=cfg.name,
        task=task,
        num_labels=num_labels,
        num_outputs=adapter_class(task).outputs_for(num_labels),
        in_channels=cfg.in_channels,
        pretrained=cfg.weights is not None or cfg.backbone_weights is not None,
        trainable_backbone_layers=cfg.trainable_backbone_layers,
        freeze_batchnorm=cfg.freeze_batchnorm,
    )
    model = spec.builder(params, ctx)
    if backbone_weights is not None:
        load_backbone_weights(model, backbone_weights, spec.backbone)
    report = None
    if weights is not None:
        state, file_categories = read_weights(weights)
        rows = label_rows(file_categories, category_map) if file_categories and category_map is not None else None
        report = transfer_weights(model, state, source=str(cfg.weights), heads=spec.heads, strict=cfg.strict,
                                  label_rows=rows)
    if not spec.own_freezing:
        if ctx.frozen_batchnorm:
            freeze_backbone_batchnorm(model, spec.backbone)
        if cfg.trainable_backbone_layers is not None:
            freeze_backbone_stages(model, spec.backbone, cfg.trainable_backbone_layers, cfg.name)
    return model, report


def check_model(cfg: ModelConfig, task: str) -> tuple[ModelSpec, Params]:
    """Everything `build_model` checks before building: the name, the task, the model's own parameters
    (`segpipe.model_catalogue.check_model_section`, which the API runs at submit without this module)."""
    params = check_model_section(cfg, task)
    return MODELS.get(cfg.name), params


def model_spec(name: str) -> ModelSpec:
    return MODELS.get(name)


def describe_models() -> list[tuple[str, tuple[str, ...], str]]:
    """(name, task kinds, description) of every registered model, by name (for ``segpipe models``)."""
    return [(e.name, tuple(sorted(e.tags)), e.description) for e in MODELS]
