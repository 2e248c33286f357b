"""Fixtures for the retraining tests: a tiny binary mask dataset, real stores on a SQLite file with a
settable clock, a real Celery app publishing to a SQLite broker file (no worker runs here). ``settings``
and ``clock`` are the suite's (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from segpipe.data.synthetic import make_mask_folders
from segpipe.retrain.schedule import Schedule, parse_schedule
from segpipe.settings import Settings
from segpipe.stores import Stores
from tests.support.clock import Clock
from workers.celery_app import create_app as create_celery


def tiny_config(data: Path, **train: Any) -> dict[str, Any]:
    """A binary U-Net job config over ``data/{train,val}`` that trains in seconds on a CPU."""
    return {
        "task": "binary",
        "data": {
            "train": {"images": str(data / "train/images"), "masks": str(data / "train/masks")},
            "val": {"images": str(data / "val/images"), "masks": str(data / "val/masks")},
            "foreground_value": 255,
            "num_workers": 0,
        },
        "augment": {"preset": "none"},
        "model": {"name": "unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 16, 16]},
        "train": {"epochs": 1, "batch_size": 4, "image_size": 32, "device": "cpu", "scheduler": "none",
                  "amp": "off", "lr": 0.003, **train},
    }


def make_data(root: Path, n_train: int = 4, size: int = 32) -> Path:
    make_mask_folders(root / "train", n_images=n_train, size=(size, size), binary=True, seed=1)
    make_mask_folders(root / "val", n_images=3, size=(size, size), binary=True, seed=2)
    return root


def schedule_for(data: Path, base: Path, **entry: Any) -> Schedule:
    raw = {"debounce_seconds": 30, "models": {"shapes": {
        "every": "1h", "config": tiny_config(data), "gate": {"metric": "iou", "min_delta": 0.05}, **entry}}}
    return parse_schedule(raw, base)


@pytest.fixture
def stores(settings: Settings, clock: Clock) -> Iterator[Stores]:
    opened = Stores.open(settings.db_url, settings.artifacts, now=clock)
    yield opened
    opened.close()


@pytest.fixture
def celery_app(settings: Settings) -> Celery:
    return create_celery(settings)
