"""The model catalogue the API checks submits against (no torch) says what the builders say: the same models,
tasks and parameter classes; the encoder names it holds as data are those of the installed smp and timm."""

from __future__ import annotations

from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import timm

import segpipe.encoder_names
from segpipe.config import ModelConfig
from segpipe.encoder_names import SMP_ENCODERS, TIMM_MODELS, check_encoder, generate
from segpipe.errors import ConfigError
from segpipe.model_catalogue import CATALOGUE, check_model_section
from segpipe.models.registry import MODELS


def test_the_catalogue_and_the_builders_name_the_same_models_tasks_and_parameters() -> None:
    assert CATALOGUE.names() == MODELS.names()
    for name in CATALOGUE.names():
        assert CATALOGUE.entry(name).tags == MODELS.entry(name).tags, name
        assert CATALOGUE.get(name).params is MODELS.get(name).params, name


def test_the_encoder_lists_are_those_of_the_installed_libraries() -> None:
    assert set(smp.encoders.get_encoder_names()) == SMP_ENCODERS
    assert set(timm.list_models()) <= TIMM_MODELS
    assert all(timm.is_model(name) for name in TIMM_MODELS)
    # regenerating the module changes nothing: the lists are not stale
    assert generate() == Path(segpipe.encoder_names.__file__).read_text(encoding="utf-8")


@pytest.mark.parametrize(("encoder", "ok"), [
    ("resnet34", True), ("tu-resnet50", True), ("tu-resnet50.a1_in1k", True),
    ("resnet9000", False), ("tu-no_such_net", False), ("tu-", False),
])
def test_check_encoder_agrees_with_smp_and_timm(encoder: str, ok: bool) -> None:
    timm_ok = encoder.startswith("tu-") and timm.is_model(encoder.removeprefix("tu-"))
    assert ok == (encoder in smp.encoders.get_encoder_names() or timm_ok)
    if ok:
        check_encoder(encoder)
    else:
        with pytest.raises(ValueError, match="unknown"):
            check_encoder(encoder)


def test_check_model_section_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"model\.depth_of_field: unknown parameter for model 'unet'"):
        check_model_section(ModelConfig(name="unet", depth_of_field=3), "binary")
    with pytest.raises(ConfigError, match=r"model\.encoder: unknown encoder 'resnet9000'"):
        check_model_section(ModelConfig(name="unet", encoder="resnet9000"), "semantic")
    with pytest.raises(ConfigError, match="does not do task 'binary'"):
        check_model_section(ModelConfig(name="maskrcnn_resnet50_fpn"), "binary")
    assert check_model_section(ModelConfig(name="unet", encoder="tu-resnet18"), "binary").encoder == "tu-resnet18"
