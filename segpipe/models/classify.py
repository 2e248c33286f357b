"""Classification models: the small pyramid CNN and torchvision classifiers (random init, weights=None).

Input: float B×in_channels×H×W, ImageNet-normalised (``ClassificationAdapter.prepare``), any H, W.
Output: B×K logits.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from segpipe.model_params import MobileNetParams, ResNetParams, SmallCNNParams
from segpipe.models.registry import BuildContext, register_model
from segpipe.models.transfer import HeadSpec
from segpipe.models.weights import BackboneSpec


class SmallCNN(nn.Module):
    """conv3×3 → ReLU → max-pool blocks, filters growing as resolution halves, then an adaptive pool to a
    fixed grid (so any input size works) and two fully connected layers with dropout."""

    def __init__(self, in_channels: int, num_classes: int, p: SmallCNNParams) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for c in p.channels:
            layers.append(nn.Conv2d(c_in, c, 3, padding=1, bias=not p.batch_norm))
            if p.batch_norm:
                layers.append(nn.BatchNorm2d(c))
            # ceil_mode keeps at least one pixel when the input is smaller than 2**len(channels)
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)]
            c_in = c
        layers.append(nn.AdaptiveAvgPool2d(p.grid))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(p.dropout),
            nn.Linear(c_in * p.grid * p.grid, p.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p.dropout),
            nn.Linear(p.hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model(
    "cnn_small",
    description="small pyramid CNN (conv-ReLU-pool blocks, FC + dropout); fast on CPU",
    backbone=BackboneSpec("features"),
    heads=HeadSpec(heads=("classifier.5.",)),  # the last Linear: one output per class
)
def build_cnn_small(p: SmallCNNParams, ctx: BuildContext) -> nn.Module:
    return SmallCNN(ctx.in_channels, ctx.num_outputs, p)


def replace_first_conv(model: nn.Module, in_channels: int) -> None:
    """Swap the model's first Conv2d for a fresh one taking `in_channels` (same kernel, stride, ...)."""
    name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels == in_channels:
        return
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        _pair(conv.kernel_size),
        stride=_pair(conv.stride),
        padding=conv.padding if isinstance(conv.padding, str) else _pair(conv.padding),
        dilation=_pair(conv.dilation),
        bias=conv.bias is not None,
    )
    # the init torchvision gives its resnet and mobilenet convs
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


def _pair(value: tuple[int, ...]) -> tuple[int, int]:
    """A Conv2d setting as stored (one value per spatial dimension) as the pair its constructor takes."""
    first, second = value
    return first, second


def _torchvision_resnet(arch: str) -> None:
    @register_model(
        arch,
        description=f"torchvision {arch} (random init)",
        backbone=BackboneSpec("", skip=("fc.",)),
        heads=HeadSpec(heads=("fc.",)),
    )
    def build(p: ResNetParams, ctx: BuildContext) -> nn.Module:
        factory = getattr(torchvision.models, arch)
        model = factory(weights=None, num_classes=ctx.num_outputs, zero_init_residual=p.zero_init_residual)
        replace_first_conv(model, ctx.in_channels)
        return model


def _torchvision_mobilenet(arch: str) -> None:
    @register_model(
        arch,
        description=f"torchvision {arch} (random init); light, good on CPU",
        backbone=BackboneSpec("features"),
        heads=HeadSpec(heads=("classifier.3.",)),  # the last Linear of torchvision's classifier
    )
    def build(p: MobileNetParams, ctx: BuildContext) -> nn.Module:
        factory = getattr(torchvision.models, arch)
        model = factory(weights=None, num_classes=ctx.num_outputs, dropout=p.dropout)
        replace_first_conv(model, ctx.in_channels)
        return model


for _arch in ("resnet18", "resnet34", "resnet50"):
    _torchvision_resnet(_arch)
for _arch in ("mobilenet_v3_small", "mobilenet_v3_large"):
    _torchvision_mobilenet(_arch)
