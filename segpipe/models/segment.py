"""Semantic / binary segmentation models from segmentation_models_pytorch (smp), random init.

``encoder_weights`` is always None: nothing downloads; ImageNet or own weights come from a local file
through ``model.backbone_weights`` (loaded into ``model.encoder``).

Input: float B×in_channels×H×W, ImageNet-normalised. Output: B×C×H×W logits, C = num_labels
(semantic) or 1 (binary). unet++ / fpn / deeplabv3plus need H, W divisible by the encoder's output
stride; the segmentation adapters pad for them (``dense_tasks.required_multiple``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from torch import nn

from segpipe.errors import ConfigError
from segpipe.models.registry import BuildContext, Params, register_model
from segpipe.models.transfer import HeadSpec
from segpipe.models.weights import BackboneSpec
from segpipe.task_kinds import DENSE_TASKS

_DECODER_CHANNELS = (256, 128, 64, 32, 16)  # smp's unet defaults, one per encoder stage
# An ImageNet classifier file carries its head; the encoder has none.
_ENCODER = BackboneSpec("encoder", skip=("fc.", "classifier."))
# The 1×1 conv to one logit per class (smp's segmentation_head).
_HEAD = HeadSpec(heads=("segmentation_head.",))


def encoder_names() -> list[str]:
    import segmentation_models_pytorch as smp

    return sorted(smp.encoders.get_encoder_names())


class SmpParams(Params):
    encoder: str = Field("resnet18", description="smp encoder name, or 'tu-<timm model>'")
    encoder_depth: int = Field(5, ge=3, le=5, description="encoder stages used")

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, name: str) -> str:
        if name.startswith("tu-"):
            import timm

            if not timm.is_model(name.removeprefix("tu-")):
                raise ValueError(f"unknown timm model {name.removeprefix('tu-')!r} in encoder {name!r}")
            return name
        if name not in encoder_names():
            raise ValueError(
                f"unknown encoder {name!r}; known: {', '.join(encoder_names())}, or tu-<timm model>"
            )
        return name


class UnetParams(SmpParams):
    decoder_channels: list[int] | None = Field(
        None, description="one per encoder stage; default 256, 128, 64, 32, 16 (first encoder_depth)"
    )
    decoder_attention_type: Literal["scse"] | None = None

    @model_validator(mode="after")
    def _one_per_stage(self) -> UnetParams:
        if self.decoder_channels is not None and len(self.decoder_channels) != self.encoder_depth:
            raise ValueError(
                f"decoder_channels has {len(self.decoder_channels)} entries, needs encoder_depth="
                f"{self.encoder_depth}"
            )
        return self

    def decoder(self) -> list[int]:
        return self.decoder_channels or list(_DECODER_CHANNELS[: self.encoder_depth])


class FPNParams(SmpParams):
    decoder_pyramid_channels: int = Field(256, ge=1)
    decoder_segmentation_channels: int = Field(128, ge=1)
    decoder_merge_policy: Literal["add", "cat"] = "add"
    decoder_dropout: float = Field(0.2, ge=0, lt=1)


class DeepLabV3PlusParams(SmpParams):
    encoder_output_stride: Literal[8, 16] = 16
    decoder_channels: int = Field(256, ge=1)
    decoder_atrous_rates: tuple[int, int, int] = (12, 24, 36)
    decoder_aspp_separable: bool = True
    decoder_aspp_dropout: float = Field(0.5, ge=0, lt=1)


def _smp(ctx: BuildContext, p: SmpParams, arch: str, **kwargs: object) -> nn.Module:
    import segmentation_models_pytorch as smp

    try:
        return getattr(smp, arch)(
            encoder_name=p.encoder,
            encoder_depth=p.encoder_depth,
            encoder_weights=None,  # never download
            in_channels=ctx.in_channels,
            classes=ctx.num_outputs,
            **kwargs,
        )
    except (ValueError, KeyError, AttributeError, RuntimeError) as e:
        # smp rejects some encoder/architecture combinations (e.g. no dilated mode) only at build time
        raise ConfigError(f"model {ctx.name!r} with encoder {p.encoder!r}: {e}") from None


_TASKS = DENSE_TASKS


@register_model(
    "unet",
    tasks=_TASKS,
    description="smp U-Net (any smp encoder, default resnet18)",
    params=UnetParams,
    backbone=_ENCODER,
    heads=_HEAD,
)
def build_unet(p: UnetParams, ctx: BuildContext) -> nn.Module:
    return _smp(ctx, p, "Unet", decoder_channels=p.decoder(), decoder_attention_type=p.decoder_attention_type)


@register_model(
    "unetplusplus",
    tasks=_TASKS,
    description="smp U-Net++ (nested skip connections)",
    params=UnetParams,
    backbone=_ENCODER,
    heads=_HEAD,
)
def build_unetplusplus(p: UnetParams, ctx: BuildContext) -> nn.Module:
    return _smp(
        ctx, p, "UnetPlusPlus", decoder_channels=p.decoder(), decoder_attention_type=p.decoder_attention_type
    )


@register_model(
    "fpn",
    tasks=_TASKS,
    description="smp Feature Pyramid Network",
    params=FPNParams,
    backbone=_ENCODER,
    heads=_HEAD,
)
def build_fpn(p: FPNParams, ctx: BuildContext) -> nn.Module:
    return _smp(
        ctx,
        p,
        "FPN",
        decoder_pyramid_channels=p.decoder_pyramid_channels,
        decoder_segmentation_channels=p.decoder_segmentation_channels,
        decoder_merge_policy=p.decoder_merge_policy,
        decoder_dropout=p.decoder_dropout,
    )


@register_model(
    "deeplabv3plus",
    tasks=_TASKS,
    description="smp DeepLabV3+ (atrous spatial pyramid pooling)",
    params=DeepLabV3PlusParams,
    backbone=_ENCODER,
    heads=_HEAD,
)
def build_deeplabv3plus(p: DeepLabV3PlusParams, ctx: BuildContext) -> nn.Module:
    return _smp(
        ctx,
        p,
        "DeepLabV3Plus",
        encoder_output_stride=p.encoder_output_stride,
        decoder_channels=p.decoder_channels,
        decoder_atrous_rates=p.decoder_atrous_rates,
        decoder_aspp_separable=p.decoder_aspp_separable,
        decoder_aspp_dropout=p.decoder_aspp_dropout,
    )
