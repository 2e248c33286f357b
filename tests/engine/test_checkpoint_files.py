"""best.pt keeps the weights only (issue 22, point 4): the optimizer, scheduler, scaler and RNG states
are for resuming, which reads last.pt. A one-epoch Mask R-CNN R50 run wrote 710 MB because both files
carried Adam/SGD state; now best.pt is the model alone, and resuming from it is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from segpipe.data.synthetic import make_shapes_coco
from segpipe.engine.checkpoint import RESUME_ONLY, load_checkpoint, state_bytes
from segpipe.engine.predict import load_model
from segpipe.engine.runner import train
from segpipe.errors import ConfigError
from tests.engine.runs import coco_source, job_config, same_split


def test_best_checkpoint_has_no_optimizer_state_and_resume_uses_last(tmp_path: Path) -> None:
    coco = make_shapes_coco(tmp_path / "data", n_images=4, size=(32, 32), seed=1)
    model = {"name": "unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 16, 16]}
    config = job_config("binary", same_split(coco_source(coco)), model, tmp_path / "run", epochs=2, batch_size=2,
                        lr=1e-3, image_size=32, optimizer="adamw")
    result = train(config, show_progress=False)
    best, last = load_checkpoint(result.run_dir / "best.pt"), load_checkpoint(result.run_dir / "last.pt")
    assert set(last) >= RESUME_ONLY and not RESUME_ONLY & set(best)
    assert {"model", "config", "category_map"} <= set(best)
    # AdamW keeps two moments per trained weight; best.pt is smaller by all of them
    best_size, last_size = (result.run_dir / "best.pt").stat().st_size, (result.run_dir / "last.pt").stat().st_size
    moments = state_bytes(last["optimizer"])
    assert moments > 1_000_000 and last_size - best_size >= moments, (best_size, last_size, moments)
    assert load_model(result.run_dir).checkpoint.name == "best.pt"  # predicts from best, as before
    with pytest.raises(ConfigError, match=r"weights only \(a best.pt\): resume from the run's last.pt"):
        train(config.model_copy(update={"output_dir": tmp_path / "again"}), resume=result.run_dir / "best.pt",
              show_progress=False)
    resumed = train(config.model_copy(update={"train": config.train.model_copy(update={"epochs": 3})}),
                    resume=True, show_progress=False)
    assert resumed.state.epoch == 3
