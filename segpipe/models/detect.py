"""Instance (Mask R-CNN) and detection (Faster R-CNN) models from torchvision, random init.

``weights=None, weights_backbone=None`` always; pretrained weights come from local files
(``model.weights`` for a whole model — torchvision's own detection checkpoints fit, the state dict
keys are the same — or ``model.backbone_weights`` for ``backbone.body``, e.g. an ImageNet resnet).

As torchvision does, when weights will be loaded (``ctx.pretrained``) the backbone uses frozen batch
norm and only its top 3 stages train by default; from scratch everything trains with plain batch
norm. The v2 models always use plain batch norm (their torchvision definition).

Input: a list of float 3×H×W images in 0..1; the models normalise (ImageNet) and resize
(``min_size``/``max_size``) internally and return boxes in input pixels. Only 3 input channels.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torchvision.models import detection
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
from torchvision.ops.misc import FrozenBatchNorm2d

from segpipe.errors import ConfigError
from segpipe.model_params import MobileNetRcnnParams, RcnnParams
from segpipe.models.registry import BuildContext, register_model
from segpipe.models.transfer import HeadSpec
from segpipe.models.weights import BackboneSpec

_RESNET_BODY = BackboneSpec("backbone.body", skip=("fc.",))  # ImageNet resnet: its fc is not used
# An ImageNet mobilenet_v3_large file names the conv stack "features."; its classifier is not used.
_MOBILENET_BODY = BackboneSpec("backbone.body", source_prefixes=("features.",), skip=("classifier.",))


def _kwargs(p: RcnnParams) -> dict[str, Any]:
    return {
        "min_size": p.min_size,
        "max_size": p.max_size,
        "box_detections_per_img": p.box_detections_per_img,
        "box_score_thresh": p.box_score_thresh,
        "box_nms_thresh": p.box_nms_thresh,
        "box_batch_size_per_image": p.box_batch_size_per_image,
        "rpn_batch_size_per_image": p.rpn_batch_size_per_image,
        "rpn_pre_nms_top_n_train": p.rpn_pre_nms_top_n_train,
        "rpn_pre_nms_top_n_test": p.rpn_pre_nms_top_n_test,
        "rpn_post_nms_top_n_train": p.rpn_post_nms_top_n_train,
        "rpn_post_nms_top_n_test": p.rpn_post_nms_top_n_test,
    }


def _check_rgb(ctx: BuildContext) -> None:
    if ctx.in_channels != 3:
        raise ConfigError(
            f"model {ctx.name!r} takes 3-channel RGB input only (torchvision normalises 3 channels "
            f"inside the model); got in_channels={ctx.in_channels}"
        )


def _trainable(p: RcnnParams, ctx: BuildContext, all_layers: int) -> int:
    """``model.trainable_backbone_layers`` (0..all_layers); None: 3 with pretrained weights, else all."""
    n = ctx.trainable_backbone_layers
    if n is None:
        return 3 if ctx.pretrained else all_layers
    if n > all_layers:
        raise ConfigError(
            f"model.trainable_backbone_layers={n}: model {ctx.name!r} has {all_layers} backbone stages; "
            f"use 0–{all_layers}"
        )
    return n


def _norm(ctx: BuildContext) -> type[nn.Module]:
    return FrozenBatchNorm2d if ctx.frozen_batchnorm else nn.BatchNorm2d


def _resnet_body(arch: str, p: RcnnParams, ctx: BuildContext) -> nn.Module:
    return resnet_fpn_backbone(
        backbone_name=arch, weights=None, norm_layer=_norm(ctx), trainable_layers=_trainable(p, ctx, 5)
    )


def _freeze_resnet_stages(model: nn.Module, trainable: int) -> None:
    """Freeze all but the top `trainable` stages of ``model.backbone.body`` (torchvision's rule)."""
    stages = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable]
    if trainable == 5:
        stages.append("bn1")
    rcnn: Any = model  # torchvision's GeneralizedRCNN, untyped
    for name, param in rcnn.backbone.body.named_parameters():
        if not name.startswith(tuple(stages)):
            param.requires_grad_(False)


# The class-dependent layers: box classifier/regressor, and the per-class mask logits (conv5_mask, the
# deconvolution before them, does not depend on the class count and loads from any Mask R-CNN file).
_MASK_HEADS = HeadSpec(heads=("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits."))
# A Mask R-CNN file fine-tunes a Faster R-CNN too: its mask branch has nowhere to go and is ignored.
_BOX_HEADS = HeadSpec(heads=("roi_heads.box_predictor.",),
                      ignorable=("roi_heads.mask_head.", "roi_heads.mask_predictor."))


@register_model(
    "maskrcnn_resnet50_fpn",
    description="torchvision Mask R-CNN, ResNet-50 FPN",
    backbone=_RESNET_BODY,
    heads=_MASK_HEADS,
    own_freezing=True,
)
def build_maskrcnn_resnet50_fpn(p: RcnnParams, ctx: BuildContext) -> nn.Module:
    _check_rgb(ctx)
    return detection.MaskRCNN(_resnet_body("resnet50", p, ctx), num_classes=ctx.num_outputs, **_kwargs(p))


@register_model(
    "maskrcnn_resnet18_fpn",
    description="light Mask R-CNN, ResNet-18 FPN; trains on a CPU",
    backbone=_RESNET_BODY,
    heads=_MASK_HEADS,
    own_freezing=True,
)
def build_maskrcnn_resnet18_fpn(p: RcnnParams, ctx: BuildContext) -> nn.Module:
    _check_rgb(ctx)
    return detection.MaskRCNN(_resnet_body("resnet18", p, ctx), num_classes=ctx.num_outputs, **_kwargs(p))


@register_model(
    "maskrcnn_resnet50_fpn_v2",
    description="torchvision Mask R-CNN v2, ResNet-50 FPN (improved recipe, heavier)",
    backbone=_RESNET_BODY,
    heads=_MASK_HEADS,
    own_freezing=True,
)
def build_maskrcnn_resnet50_fpn_v2(p: RcnnParams, ctx: BuildContext) -> nn.Module:
    _check_rgb(ctx)
    # torchvision ignores trainable layers without its own pretrained weights, so freeze here.
    model = detection.maskrcnn_resnet50_fpn_v2(
        weights=None, weights_backbone=None, num_classes=ctx.num_outputs, **_kwargs(p)
    )
    _freeze_resnet_stages(model, _trainable(p, ctx, 5))
    return model


@register_model(
    "fasterrcnn_resnet50_fpn",
    description="torchvision Faster R-CNN, ResNet-50 FPN",
    backbone=_RESNET_BODY,
    heads=_BOX_HEADS,
    own_freezing=True,
)
def build_fasterrcnn_resnet50_fpn(p: RcnnParams, ctx: BuildContext) -> nn.Module:
    _check_rgb(ctx)
    return detection.FasterRCNN(_resnet_body("resnet50", p, ctx), num_classes=ctx.num_outputs, **_kwargs(p))


@register_model(
    "fasterrcnn_resnet50_fpn_v2",
    description="torchvision Faster R-CNN v2, ResNet-50 FPN (improved recipe, heavier)",
    backbone=_RESNET_BODY,
    heads=_BOX_HEADS,
    own_freezing=True,
)
def build_fasterrcnn_resnet50_fpn_v2(p: RcnnParams, ctx: BuildContext) -> nn.Module:
    _check_rgb(ctx)
    model = detection.fasterrcnn_resnet50_fpn_v2(
        weights=None, weights_backbone=None, num_classes=ctx.num_outputs, **_kwargs(p)
    )
    _freeze_resnet_stages(model, _trainable(p, ctx, 5))
    return model


@register_model(
    "fasterrcnn_mobilenet_v3_large_fpn",
    description="torchvision Faster R-CNN, MobileNetV3-Large FPN; light",
    backbone=_MOBILENET_BODY,
    heads=_BOX_HEADS,
    own_freezing=True,
)
def build_fasterrcnn_mobilenet_v3_large_fpn(p: MobileNetRcnnParams, ctx: BuildContext) -> nn.Module:
    _check_rgb(ctx)
    body = mobilenet_backbone(
        backbone_name="mobilenet_v3_large",
        weights=None,
        fpn=True,
        norm_layer=_norm(ctx),
        trainable_layers=_trainable(p, ctx, 6),
    )
    # torchvision's anchors for this model: every size on each of its 3 feature maps
    sizes = ((32, 64, 128, 256, 512),) * 3
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    kwargs = {"rpn_score_thresh": 0.05, **_kwargs(p)}
    return detection.FasterRCNN(body, num_classes=ctx.num_outputs, rpn_anchor_generator=anchors, **kwargs)
