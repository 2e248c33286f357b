"""Which part of a model inspection runs, and running it on one input without side effects.

Classifiers and smp segmentation models run whole: B×C×H×W in, every layer sees that tensor's
descendants. torchvision's detectors (Mask / Faster R-CNN) are inspected through their ``backbone``
only (ResNet or MobileNet body + FPN): the RPN and ROI heads work on a data-dependent number of
proposals, so their shapes say nothing about the image, and the model's own ``transform`` (resize to
``min_size``, normalise) is skipped for the layer table so the table is at the size asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

from segpipe.errors import ConfigError


def is_detector(model: nn.Module) -> bool:
    """A torchvision detector: list-of-images input, inspected through its backbone."""
    return isinstance(model, GeneralizedRCNN)


def scope_prefix(model: nn.Module) -> str:
    """Dotted name (inside `model`) of the part that inspection runs: "" for the whole model."""
    return "backbone" if is_detector(model) else ""


def scope_module(model: nn.Module) -> nn.Module:
    prefix = scope_prefix(model)
    return model.get_submodule(prefix) if prefix else model


def full_name(prefix: str, name: str) -> str:
    """A submodule's name inside the whole model, from its name inside the scope."""
    return ".".join(p for p in (prefix, name) if p)


def model_device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and no grad inside; every submodule's own train/eval flag restored after (a caller
    may keep some submodules, e.g. frozen batch norm, in eval mode while the rest trains)."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, flag in flags.items():
            m.training = flag


@contextmanager
def hooked(modules: dict[str, nn.Module], on_output: Callable[[str, nn.Module, tuple, Any], None]) -> Iterator[None]:
    """Forward hooks calling ``on_output(name, module, inputs, output)``, removed on exit."""
    handles = [
        m.register_forward_hook(lambda mod, inputs, output, _name=name: on_output(_name, mod, inputs, output))
        for name, m in modules.items()
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def run_forward(what: str, forward: Callable[[], Any]) -> Any:
    """Call `forward`; a shape error inside the model becomes a ConfigError naming `what` was run."""
    try:
        return forward()
    except (RuntimeError, ValueError) as e:
        # the input size and channel count come from the user (config / --size / the image)
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{what}: forward pass failed: {first_line}") from None
