"""Checkpoints as ``segpipe train`` writes them (config, category map, model state), for each family,
with random weights: the export and its parity check do not depend on what the model learned."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from segpipe import config as config_mod
from segpipe.data.categories import CategoryMap
from segpipe.models import build_model

SHAPES = CategoryMap(ids=(3, 7, 12), names=("circle", "square", "triangle"), offset=1)
CLASSES = CategoryMap(ids=(3, 7, 12), names=("circle", "square", "triangle"), offset=0)


def write_checkpoint(run_dir: Path, task: str, model: dict[str, Any], cmap: CategoryMap, image_size: int = 64,
                     seed: int = 0) -> Path:
    config = config_mod.from_dict({"task": task, "model": model, "train": {"image_size": image_size},
                                   "augment": {"preset": "none"}})
    torch.manual_seed(seed)
    net = build_model(config.model, task, cmap.num_labels)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"model": net.state_dict(), "config": config_mod.dump(config), "category_map": cmap.to_dict(),
                "task": task}, run_dir / "best.pt")
    return run_dir


@pytest.fixture
def checkpoint(tmp_path: Path) -> Callable[..., Path]:
    def make(task: str, model: dict[str, Any], cmap: CategoryMap, **kw: Any) -> Path:
        return write_checkpoint(tmp_path / f"run_{task}", task, model, cmap, **kw)

    return make
