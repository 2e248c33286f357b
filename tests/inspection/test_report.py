"""inspect_model from a job config (untrained) and from a checkpoint (trained)."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from segpipe import config as config_mod
from segpipe.data.categories import CategoryMap
from segpipe.engine.checkpoint import BEST, save_checkpoint
from segpipe.errors import ConfigError
from segpipe.inspection.grids import CAPTION_HEIGHT
from segpipe.inspection.report import from_config, from_run, inspect_model


def job(task: str = "classification", model: dict | None = None, size: int = 32, **data: object) -> config_mod.JobConfig:
    raw: dict = {"task": task, "model": model or {"name": "cnn_small"}, "train": {"image_size": size}}
    if data:
        raw["data"] = {"train": {"root": "/nowhere"} if task == "classification" else {"images": "/i", "masks": "/m"},
                       **data}
    return config_mod.from_dict(raw)


def write_image(path: Path, h: int, w: int) -> Path:
    image = np.full((h, w, 3), 60, np.uint8)
    cv2.circle(image, (w // 2, h // 2), min(h, w) // 3, (255, 200, 0), -1)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def test_num_labels_from_the_config() -> None:
    assert from_config(job(categories=["a", "b", "c"])).num_labels == 3
    assert from_config(job("semantic", {"name": "unet"}, classes=["bg", "road", "car"])).num_labels == 3
    assert from_config(job("binary", {"name": "unet"})).num_labels == 2
    guessed = from_config(job())
    assert guessed.num_labels == 2 and "num_labels=2 assumed" in guessed.notes[0]
    assert from_config(job(), num_labels=5).model.classifier[-1].out_features == 5


def test_table_only(tmp_path: Path) -> None:
    result = inspect_model(from_config(job(size=28)))
    assert (result.model_name, result.task, result.image_size, result.trained) == ("cnn_small", "classification", 28, False)
    assert result.table.input_shape == (1, 3, 28, 28) and not result.table.mismatches
    assert result.filter_grid is None and result.feature_maps == []
    assert "random init" in result.source


def test_untrained_config_with_image(tmp_path: Path) -> None:
    image = write_image(tmp_path / "photo.png", 48, 80)
    result = inspect_model(from_config(job("semantic", {"name": "unet"}, size=64)), image=image,
                           out_dir=tmp_path / "out", layers=["encoder.conv1", "decoder.blocks.4.conv2.0"])
    model_input = cv2.imread(str(tmp_path / "out" / "input.png"))
    assert model_input.shape == (64, 64, 3)  # letterboxed to train.image_size, as in prediction
    assert (model_input[40:] == 0).all()  # 48×80 → 38×64 at the top, padding below
    assert result.filter_grid is not None and result.filter_grid.path == tmp_path / "out" / "filters.png"
    assert [f.output_shape for f in result.feature_maps] == [(1, 64, 32, 32), (1, 16, 64, 64)]
    assert all(f.path.is_file() for f in result.feature_maps)


def test_trained_checkpoint(tmp_path: Path) -> None:
    config = job(size=32)
    subject = from_config(config, num_labels=3)
    with torch.no_grad():
        subject.model.features[0].weight[0] = 0.0
        subject.model.features[0].weight[0, 2, :, 0] = 1.0  # a learnt "blue left edge" filter
    cmap = CategoryMap(ids=(1, 2, 3), names=("a", "b", "c"), offset=0)
    state = {"model": subject.model.state_dict(), "config": config_mod.dump(config), "category_map": cmap.to_dict()}
    save_checkpoint(tmp_path / "run" / BEST, state)

    loaded = from_run(tmp_path / "run")
    assert loaded.trained and loaded.num_labels == 3 and loaded.source.endswith(BEST)
    result = inspect_model(loaded, image=write_image(tmp_path / "x.png", 40, 40), out_dir=tmp_path / "out")
    assert [f.layer for f in result.feature_maps] == ["features.0", "features.3", "features.6"]
    grid = cv2.cvtColor(cv2.imread(str(result.filter_grid.path)), cv2.COLOR_BGR2RGB)
    y, x = CAPTION_HEIGHT + 6, 6
    assert (grid[y : y + 48, x : x + 16] == (0, 0, 255)).all() and (grid[y : y + 48, x + 16 : x + 48] == 0).all()


def test_detector_note_and_size_override() -> None:
    subject = from_config(job("instance", {"name": "maskrcnn_resnet18_fpn"}))
    result = inspect_model(subject, image_size=64)
    assert result.table.input_shape == (1, 3, 64, 64) and result.table.scope == "backbone"
    assert any(n.startswith("detector: the table covers backbone") for n in result.notes)


def test_bad_requests(tmp_path: Path) -> None:
    subject = from_config(job())
    with pytest.raises(ConfigError, match="give an output folder"):
        inspect_model(subject, image=np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ConfigError, match="drawn for an image; none was given"):
        inspect_model(subject, layers=["features.0"], out_dir=tmp_path)
    with pytest.raises(ConfigError, match="image size must be positive"):
        inspect_model(subject, image_size=0)
    with pytest.raises(ConfigError, match="no such run directory or checkpoint"):
        from_run(tmp_path / "missing")
