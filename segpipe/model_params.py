"""Every model's own parameters (the keys of a model section beyond the common ones), as pydantic models.

They live apart from the builders (`segpipe.models`, which import torch, torchvision and smp) so that a
process that only checks configs, the API at submit, validates a model section without loading them;
`segpipe.model_catalogue` says which class belongs to which model.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from segpipe.config import ModelConfig
from segpipe.encoder_names import check_encoder
from segpipe.errors import ConfigError
from segpipe.vocabulary import SCORE_FLOOR

# The keys of a model section that every model takes; the rest belong to the model's Params.
COMMON_KEYS = tuple(ModelConfig.model_fields)


class Params(BaseModel):
    """Base of every model's own parameters; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


P = TypeVar("P", bound=Params)

_DECODER_CHANNELS = (256, 128, 64, 32, 16)  # smp's unet defaults, one per encoder stage


def parse_params(name: str, params_type: type[P], raw: dict[str, Any]) -> P:
    """Validate a model's own keys; ConfigError naming the key and listing the allowed ones."""
    try:
        return params_type.model_validate(raw)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                own = ", ".join(params_type.model_fields) or "(none)"
                problems.append(
                    f"model.{key}: unknown parameter for model {name!r}; allowed: {own} "
                    f"(and for every model: {', '.join(COMMON_KEYS)})"
                )
            else:
                msg = err["msg"].removeprefix("Value error, ")
                where = f"model.{key}" if key else f"model {name!r}"
                problems.append(f"{where}: {msg}" + (f" (got {err['input']!r})" if key else ""))
        raise ConfigError("; ".join(problems)) from None


# -- classification (segpipe.models.classify) --------------------------------------------------------


class SmallCNNParams(Params):
    channels: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1)
    hidden: int = Field(256, ge=1, description="units of the hidden fully connected layer")
    dropout: float = Field(0.5, ge=0, lt=1)
    batch_norm: bool = Field(False, description="batch norm after each conv")
    grid: int = Field(4, ge=1, description="the conv stack ends in an adaptive pool to grid×grid")


class ResNetParams(Params):
    zero_init_residual: bool = Field(False, description="zero-init the last BN of each residual block")


class MobileNetParams(Params):
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout before the last layer")


# -- detection and instances (segpipe.models.detect) -------------------------------------------------


class RcnnParams(Params):
    min_size: int | tuple[int, ...] = Field(
        800, description="shorter side the model resizes to (a list: one picked at random in training)"
    )
    max_size: int = Field(1333, ge=1, description="cap on the longer side after resizing")
    box_detections_per_img: int = Field(100, ge=1)
    box_score_thresh: float = Field(SCORE_FLOOR, ge=0, le=1, description="detections below are dropped")
    box_nms_thresh: float = Field(0.5, gt=0, le=1)
    box_batch_size_per_image: int = Field(
        512, ge=1, description="proposals sampled per image to train the box (and mask) heads"
    )
    rpn_batch_size_per_image: int = Field(256, ge=1, description="anchors sampled per image to train the RPN")
    # proposals the RPN keeps per image (per FPN level before NMS, in all after it); the second-stage
    # heads run on every kept proposal, so on a CPU with a few objects per image these set the speed
    rpn_pre_nms_top_n_train: int = Field(2000, ge=1, description="RPN proposals per level before NMS, training")
    rpn_pre_nms_top_n_test: int = Field(1000, ge=1, description="RPN proposals per level before NMS, inference")
    rpn_post_nms_top_n_train: int = Field(2000, ge=1, description="RPN proposals kept after NMS, training")
    rpn_post_nms_top_n_test: int = Field(1000, ge=1, description="RPN proposals kept after NMS, inference")


class MobileNetRcnnParams(RcnnParams):
    pass


# -- segmentation, smp (segpipe.models.segment) -----------------------------------------------------


class SmpParams(Params):
    encoder: str = Field("resnet18", description="smp encoder name, or 'tu-<timm model>'")
    encoder_depth: int = Field(5, ge=3, le=5, description="encoder stages used")

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, name: str) -> str:
        check_encoder(name)  # from the lists smp and timm hold, without importing them
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
