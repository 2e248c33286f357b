"""``segpipe demo`` end to end as a user runs it: no Redis, no PostgreSQL, no settings — its own SQLite
store and broker under ``--home``, its own worker process, results under ``--out``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PREDICTED_IMAGES = 6  # the demo's "incoming" folder


@pytest.mark.integration
@pytest.mark.slow
def test_demo_runs_end_to_end_without_servers(tmp_path: Path) -> None:
    home, out = tmp_path / "home", tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGPIPE_")}
    # one torch thread, as for the service's workers (see `tests.integration.conftest._service_env`)
    env.update(OMP_NUM_THREADS=os.environ.get("SEGPIPE_TEST_WORKER_THREADS", "1"), COLUMNS="200",
               SEGPIPE_PROGRESS_INTERVAL="1")
    cmd = [sys.executable, "-m", "segpipe", "demo", "--home", str(home), "--out", str(out),
           "--epochs", "1", "--images", "4"]
    try:
        done = subprocess.run(cmd, check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        log = (home / "worker.log").read_text(errors="replace")[-4000:] if (home / "worker.log").is_file() else ""
        pytest.fail(f"the demo did not finish in {exc.timeout:.0f} s:\n{exc.stdout}\n--- worker.log:\n{log}")
    story = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 0, story
    assert f"results in {out}" in done.stdout.replace("\n", ""), story

    overlays = sorted((out / "overlays").glob("*.png"))
    assert len(overlays) == PREDICTED_IMAGES, story
    plots = {p.name for p in (out / "training_plots").glob("*.png")}
    assert {"curves.png", "val_overlays.png", "pr_curves.png", "ap_per_class.png"} <= plots, plots
    # its stdout is no terminal: plain progress lines, not a bar, then the validation AP and the paths
    assert re.search(r"^\S+ \S+ job \w+ running train epoch 1/1 step \d+/1 loss \d", done.stdout, re.MULTILINE), story
    # a fast job may skip "running"
    assert re.search(r"^\S+ \S+ job \w+ (running|succeeded) predict \d/6 images", done.stdout, re.MULTILINE), story
    assert re.search(r"^validation \(8 images the model never trained on\): segm_AP -?\d\.\d{3}", done.stdout,
                     re.MULTILINE), story
    assert "━" not in done.stdout, story  # no bar drawn into a log
    results = json.loads((out / "masks_coco_rle" / "predictions.json").read_text())
    assert isinstance(results, list)
    assert all({"image_id", "category_id", "score", "segmentation"} <= set(r) for r in results)
    # one class-id PNG and one polygons file per predicted image, named as the image (a one-epoch model
    # may find no object: the files are there, empty)
    stems = {p.stem for p in overlays}
    assert {p.stem for p in (out / "masks_png" / "masks").glob("*.png")} == stems, story
    assert {p.stem for p in (out / "masks_polygons" / "polygons").glob("*.json")} == stems, story
    assert (home / "segpipe.db").is_file() and (home / "broker.db").is_file()  # the embedded store and broker
