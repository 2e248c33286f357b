"""Fine-tuning from a model version: a training job whose ``model.weights`` is ``NAME@1`` starts from
that version's checkpoint although its class count differs (the segmentation head is re-initialised),
and keeps the load report in its run directory, among its artifacts, and beside its model version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from segpipe.config import from_dict
from segpipe.data.synthetic import make_mask_folders
from segpipe.jobs.execute import run_job
from segpipe.jobs.specs import confine_spec, dump_spec
from segpipe.jobs.versions import checkpoint_path, version_files
from segpipe.stores import Stores
from tests.retrain.conftest import make_data, tiny_config

pytestmark = pytest.mark.slow  # two tiny trainings


def test_a_training_job_fine_tunes_a_version_with_other_classes(stores: Stores, settings, tmp_path: Path) -> None:
    shapes = tmp_path / "data" / "semantic"
    for split, seed in (("train", 1), ("val", 2)):
        make_mask_folders(shapes / split, n_images=4, size=(32, 32), seed=seed)
    semantic = tiny_config(shapes)
    semantic["task"], semantic["name"] = "semantic", "shapes"
    del semantic["data"]["foreground_value"]
    semantic["data"]["classes"] = ["background", "circle", "square", "triangle"]
    first = stores.jobs.create("train", yaml.safe_dump(semantic), queue="gpu", model_name="shapes")
    assert run_job(first.id, stores=stores, settings=settings, owner="w") == "succeeded"
    v1 = stores.versions.get("shapes", 1)

    cells = make_data(tmp_path / "data" / "cells", n_train=4, size=32)
    binary = {**tiny_config(cells), "name": "cells"}
    binary["model"] = {**binary["model"], "weights": "shapes@1"}
    spec = confine_spec(from_dict(binary), settings.roots, settings.artifacts)
    assert spec.model.weights == "shapes@1"  # a version reference is not a path to confine
    second = stores.jobs.create("train", dump_spec(spec), queue="gpu", model_name="cells")
    assert run_job(second.id, stores=stores, settings=settings, owner="w") == "succeeded", stores.jobs.get(second.id).error

    job = stores.jobs.get(second.id)
    assert "load_report.json" in job.artifacts
    report = json.loads((stores.artifacts.job_dir(second.id) / "run" / "load_report.json").read_text())
    assert report["source"] == str(checkpoint_path(v1, stores))
    assert set(report["reinitialised"]) == {"segmentation_head.0.weight", "segmentation_head.0.bias"}
    assert report["loaded"] > 50
    cells_v1 = stores.versions.get("cells", 1)
    assert yaml.safe_load(cells_v1.config)["model"]["weights"] == str(checkpoint_path(v1, stores))
    assert (checkpoint_path(cells_v1, stores).parent / "load_report.json").is_file()  # beside the version
    files = version_files(cells_v1, stores)  # what `segpipe models cells --json` and GET /models/cells show
    assert files["load_report"]["reinitialised"] == report["reinitialised"] and "loaded_tensors" not in files["load_report"]
    assert version_files(v1, stores)["load_report"] is None
