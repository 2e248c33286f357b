"""What the API leaves to the worker: a custom augmentation pipeline passes the submit-time checks (no
albumentations, so no torch, in the API) and is refused first thing on the worker, naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from segpipe.config import from_dict
from segpipe.errors import ConfigError
from segpipe.jobs.build_checks import check_train_build
from segpipe.jobs.preflight import check_train_config

BAD_PIPELINE = {"transform": {"__class_fullname__": "Compose", "transforms": [
    {"__class_fullname__": "HorizontalFlipp", "p": 0.5}]}}


def _config(tmp_path: Path, pipeline: dict) -> object:
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir(exist_ok=True)
    return from_dict({"task": "binary", "model": {"name": "unet"}, "augment": {"pipeline": pipeline},
                      "data": {"train": {"images": str(tmp_path / "images"), "masks": str(tmp_path / "masks")}}})


def test_a_bad_pipeline_passes_submit_and_fails_on_the_worker_naming_the_key(tmp_path: Path) -> None:
    config = _config(tmp_path, BAD_PIPELINE)
    check_train_config(config)  # the API's check
    with pytest.raises(ConfigError, match=r"augment\.pipeline.*HorizontalFlipp.*HorizontalFlip"):
        check_train_build(config)


def test_a_bad_model_parameter_is_refused_by_both(tmp_path: Path) -> None:
    config = _config(tmp_path, {"transform": {"__class_fullname__": "HorizontalFlip", "p": 0.5}})
    check_train_build(config)
    config.model = config.model.model_copy(update={"encoder_depth": 9})
    for check in (check_train_config, check_train_build):
        with pytest.raises(ConfigError, match=r"model\.encoder_depth"):
            check(config)


def test_the_submit_time_checks_import_no_model_library(tmp_path: Path) -> None:
    """A fresh interpreter runs a train config's checks: torch, smp and albumentations stay unimported."""
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    code = (
        "import sys\n"
        "from segpipe.config import from_dict\n"
        "from segpipe.jobs.preflight import check_train_config\n"
        f"check_train_config(from_dict({{'task': 'semantic', 'model': {{'name': 'unet', 'encoder': 'tu-resnet18'}},"
        f" 'data': {{'train': {{'images': {str(tmp_path / 'images')!r}, 'masks': {str(tmp_path / 'masks')!r}}}}}}}))\n"
        "print(sorted(m for m in ('torch', 'segmentation_models_pytorch', 'timm', 'albumentations') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
