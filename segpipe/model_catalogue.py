"""Which models exist, the tasks each serves and its own parameters: the part of a model section that can
be checked without building anything, so without torch (the API checks it at submit).

A model is one entry here plus its builder in `segpipe.models` (``@register_model`` with the same name,
which takes its tasks and parameters from this catalogue and refuses a name it does not hold).
"""

from __future__ import annotations

from dataclasses import dataclass

from segpipe.config import ModelConfig
from segpipe.errors import ConfigError
from segpipe.model_params import (
    DeepLabV3PlusParams,
    FPNParams,
    MobileNetParams,
    MobileNetRcnnParams,
    Params,
    RcnnParams,
    ResNetParams,
    SmallCNNParams,
    UnetParams,
    parse_params,
)
from segpipe.registry import Registry
from segpipe.task_kinds import CLASS_TASKS, DENSE_TASKS, TASK_KINDS


@dataclass(frozen=True)
class CatalogueEntry:
    """The task kinds a model serves and the pydantic class of its own parameters."""

    tasks: tuple[str, ...]
    params: type[Params] = Params


CATALOGUE: Registry[CatalogueEntry] = Registry("model")


def add(name: str, tasks: tuple[str, ...], params: type[Params] = Params) -> None:
    unknown = set(tasks) - set(TASK_KINDS)
    if unknown:
        raise ValueError(f"model {name!r}: unknown task kinds {sorted(unknown)}")
    CATALOGUE.add(name, CatalogueEntry(tasks, params), tags=tasks)


def check_model_section(cfg: ModelConfig, task: str) -> Params:
    """The model's name, its task and its own parameters (`ConfigError` naming the key); returns them parsed."""
    entry = CATALOGUE.entry(cfg.name)
    if task not in TASK_KINDS:
        raise ConfigError(f"unknown task {task!r}; known: {', '.join(TASK_KINDS)}")
    if task not in entry.tags:
        raise ConfigError(
            f"model {cfg.name!r} does not do task {task!r} (it does {', '.join(sorted(entry.tags))}); "
            f"models for {task}: {', '.join(CATALOGUE.names(task))}"
        )
    return parse_params(cfg.name, entry.obj.params, cfg.params)


add("cnn_small", CLASS_TASKS, SmallCNNParams)
for _arch in ("resnet18", "resnet34", "resnet50"):
    add(_arch, CLASS_TASKS, ResNetParams)
for _arch in ("mobilenet_v3_small", "mobilenet_v3_large"):
    add(_arch, CLASS_TASKS, MobileNetParams)
for _arch in ("maskrcnn_resnet50_fpn", "maskrcnn_resnet18_fpn", "maskrcnn_resnet50_fpn_v2"):
    add(_arch, ("instance",), RcnnParams)
for _arch in ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2"):
    add(_arch, ("detection",), RcnnParams)
add("fasterrcnn_mobilenet_v3_large_fpn", ("detection",), MobileNetRcnnParams)
add("unet", DENSE_TASKS, UnetParams)
add("unetplusplus", DENSE_TASKS, UnetParams)
add("fpn", DENSE_TASKS, FPNParams)
add("deeplabv3plus", DENSE_TASKS, DeepLabV3PlusParams)
