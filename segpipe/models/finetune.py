"""Fine-tuning controls that work the same for every model family, through its `BackboneSpec`.

- ``model.trainable_backbone_layers: k`` — the backbone's stages are its child modules that hold
  parameters, in order (a batch norm joins the stage before it; heads named in ``BackboneSpec.skip``
  are not part of it): resnets (torchvision or smp encoders) have 5 (stem, layer1–4), ``cnn_small``
  one per conv, mobilenets one per ``features`` block. The last ``k`` train, the earlier ones are
  frozen (``requires_grad=False``); ``0`` freezes the whole backbone. R-CNN builders apply torchvision's
  own rule (``trainable_layers``) instead.
- ``model.freeze_batchnorm`` (default: when weights are loaded) — the backbone's BatchNorm2d layers
  become torchvision's FrozenBatchNorm2d: the pretrained statistics and affine stay as loaded, which
  small fine-tuning batches would otherwise spoil.
- ``train.backbone_lr_mult`` — `backbone_parameters` tells the optimizer which parameters are the
  pretrained part.
"""

from __future__ import annotations

from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from segpipe.errors import ConfigError
from segpipe.models.weights import BackboneSpec

_NORMS = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, FrozenBatchNorm2d)


def backbone_stages(model: nn.Module, spec: BackboneSpec) -> list[list[str]]:
    """The backbone's stages, input first, each a list of parameter-name prefixes of `model`."""
    root = model.get_submodule(spec.path) if spec.path else model
    base = spec.path + "." if spec.path else ""
    stages: list[list[str]] = []
    for name, child in root.named_children():
        if spec.skip and (name + ".").startswith(spec.skip):
            continue
        if not any(True for _ in child.parameters()) and not isinstance(child, _NORMS):
            continue
        if isinstance(child, _NORMS) and stages:
            stages[-1].append(base + name + ".")  # conv1 + bn1 are one stage
        else:
            stages.append([base + name + "."])
    return stages


def freeze_backbone_stages(model: nn.Module, spec: BackboneSpec, trainable: int, model_name: str) -> None:
    """Freeze all but the last `trainable` backbone stages (see the module doc)."""
    stages = backbone_stages(model, spec)
    if trainable > len(stages):
        raise ConfigError(
            f"model.trainable_backbone_layers={trainable}: model {model_name!r} has {len(stages)} backbone "
            f"stages ({', '.join(s[0].rstrip('.') for s in stages)}); use 0–{len(stages)}"
        )
    frozen = tuple(prefix for stage in stages[: len(stages) - trainable] for prefix in stage)
    if not frozen:
        return
    for name, param in model.named_parameters():
        if name.startswith(frozen):
            param.requires_grad_(False)


def freeze_backbone_batchnorm(model: nn.Module, spec: BackboneSpec) -> int:
    """Replace every BatchNorm2d of the backbone by a FrozenBatchNorm2d with its values; returns how many."""
    root = model.get_submodule(spec.path) if spec.path else model
    count = 0
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if spec.skip and not spec.path and (name + ".").startswith(spec.skip) and parent is root:
                continue
            if isinstance(child, nn.BatchNorm2d):
                frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
                if child.affine:
                    frozen.weight.copy_(child.weight.detach())
                    frozen.bias.copy_(child.bias.detach())
                if child.track_running_stats:
                    frozen.running_mean.copy_(child.running_mean)
                    frozen.running_var.copy_(child.running_var)
                setattr(parent, name, frozen.to(child.weight.device if child.affine else "cpu"))
                count += 1
    return count


def backbone_parameters(model: nn.Module, spec: BackboneSpec) -> set[str]:
    """Names of the backbone's parameters (the pretrained part that ``train.backbone_lr_mult`` slows)."""
    prefixes = tuple(p for stage in backbone_stages(model, spec) for p in stage)
    return {name for name, _ in model.named_parameters() if name.startswith(prefixes)}
