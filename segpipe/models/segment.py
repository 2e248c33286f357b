"""Semantic / binary segmentation models from segmentation_models_pytorch (smp), random init.

``encoder_weights`` is always None: nothing downloads; ImageNet or own weights come from a local file
through ``model.backbone_weights`` (loaded into ``model.encoder``).

Input: float B×in_channels×H×W, ImageNet-normalised. Output: B×C×H×W logits, C = num_labels
(semantic) or 1 (binary). unet++ / fpn / deeplabv3plus need H, W divisible by the encoder's output
stride; the segmentation adapters pad for them (``dense_tasks.required_multiple``).
"""

from __future__ import annotations

from torch import nn

from segpipe.errors import ConfigError
from segpipe.model_params import DeepLabV3PlusParams, FPNParams, SmpParams, UnetParams
from segpipe.models.registry import BuildContext, register_model
from segpipe.models.transfer import HeadSpec
from segpipe.models.weights import BackboneSpec

# An ImageNet classifier file carries its head; the encoder has none.
_ENCODER = BackboneSpec("encoder", skip=("fc.", "classifier."))
# The 1×1 conv to one logit per class (smp's segmentation_head).
_HEAD = HeadSpec(heads=("segmentation_head.",))


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


@register_model(
    "unet",
    description="smp U-Net (any smp encoder, default resnet18)",
    backbone=_ENCODER,
    heads=_HEAD,
)
def build_unet(p: UnetParams, ctx: BuildContext) -> nn.Module:
    return _smp(ctx, p, "Unet", decoder_channels=p.decoder(), decoder_attention_type=p.decoder_attention_type)


@register_model(
    "unetplusplus",
    description="smp U-Net++ (nested skip connections)",
    backbone=_ENCODER,
    heads=_HEAD,
)
def build_unetplusplus(p: UnetParams, ctx: BuildContext) -> nn.Module:
    return _smp(
        ctx, p, "UnetPlusPlus", decoder_channels=p.decoder(), decoder_attention_type=p.decoder_attention_type
    )


@register_model(
    "fpn",
    description="smp Feature Pyramid Network",
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
    description="smp DeepLabV3+ (atrous spatial pyramid pooling)",
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
