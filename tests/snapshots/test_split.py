"""A snapshot's validation images stay validation images in every later snapshot."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segpipe.errors import ConfigError
from segpipe.snapshots.draft import Draft, DraftImage
from segpipe.snapshots.split import side_of, split_snapshot
from segpipe.snapshots.store import SnapshotStore


def _image(seed: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


def _draft(seeds: range, mask_rows: int = 3) -> Draft:
    draft = Draft(categories=["cell"])
    for seed in seeds:
        name = f"img{seed:03d}.png"
        draft.images[name] = DraftImage(name, _image(seed), 8, 8)
        mask = np.zeros((8, 8), bool)
        mask[:mask_rows, :4] = True
        draft.add_mask(name, "cell", mask)
    return draft


def test_validation_images_never_move_to_training_as_the_project_grows(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    first, _ = store.write(_draft(range(40)), source="s", format="label-studio")
    grown, _ = store.write(_draft(range(80), mask_rows=5), source="s", format="label-studio")  # corrected + new
    a, b = split_snapshot(first, 0.25), split_snapshot(grown, 0.25)
    val_a = {i["file_name"] for i in json.loads(a.val.read_text())["images"]}
    val_b = {i["file_name"] for i in json.loads(b.val.read_text())["images"]}
    train_b = {i["file_name"] for i in json.loads(b.train.read_text())["images"]}
    assert val_a and val_a <= val_b and not (val_a & train_b)
    assert 0.1 < len(val_b) / 80 < 0.4  # about the fraction asked for
    coco_b = json.loads(b.train.read_text())
    assert {a["image_id"] for a in coco_b["annotations"]} == {i["id"] for i in coco_b["images"]}
    assert b.counts == {"train": len(train_b), "val": len(val_b)}


def test_the_side_depends_only_on_the_bytes() -> None:
    data = _image(3)
    assert side_of(data, 0.5) == side_of(bytes(data), 0.5)
    assert {side_of(_image(s), 0.5) for s in range(20)} == {"train", "val"}


def test_a_fraction_outside_zero_and_one_is_refused(tmp_path: Path) -> None:
    snapshot, _ = SnapshotStore(tmp_path).write(_draft(range(2)), source="s", format="x")
    with pytest.raises(ConfigError, match="between 0 and 1"):
        split_snapshot(snapshot, 1.0)


def test_a_retraining_may_read_a_snapshot_and_no_other_artifact(tmp_path: Path) -> None:
    """Snapshots live in the artifact root, not in a data root: a retraining bound to a Label Studio
    project trains on one, so the data-root confinement admits the snapshots folder (and only it)."""
    from segpipe.config import from_dict
    from segpipe.gate_config import GateConfig
    from segpipe.jobs.specs import RetrainSpec, confine_spec
    from segpipe.paths import PathNotAllowed, confine
    from segpipe.settings import Settings

    settings = Settings(home=tmp_path / "home", data_roots=[tmp_path / "data"], artifact_root=tmp_path / "artifacts")
    snapshot, _ = SnapshotStore(settings.artifacts).write(_draft(range(8)), source="s", format="label-studio")
    split = split_snapshot(snapshot, 0.5)
    config = from_dict({"task": "binary", "name": "cells", "model": {"name": "unet"},
                        "data": {"train": {"images": str(split.images), "annotations": str(split.train)}}})
    spec = RetrainSpec(name="cells", config=config, dataset=[split.images, split.train, split.val],
                       validation={"images": split.images, "annotations": split.val}, gate=GateConfig(metric="iou"))
    confined = confine_spec(spec, settings.roots, settings.artifacts)
    assert confined.dataset[0] == split.images.resolve()
    assert settings.roots == [(tmp_path / "data").resolve(), settings.artifacts / "snapshots"]
    (settings.artifacts / "jobs").mkdir()
    with pytest.raises(PathNotAllowed, match="outside the allowed data roots"):
        confine(settings.artifacts / "jobs", settings.roots, what="data.train.images")
