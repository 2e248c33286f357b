"""`segpipe train | evaluate | predict` on a tiny classification job: the commands a person runs, on
the YAML config they would write (relative paths, overrides), through typer's CliRunner and once as
the installed console script in a real subprocess."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from segpipe.cli import app
from segpipe.data.synthetic import make_class_folders, make_shapes_coco

runner = CliRunner()
CONFIG = {
    "task": "classification",
    "data": {"train": {"root": "shapes"}, "val": {"root": "shapes"}, "num_workers": 0},
    "augment": {"preset": "none"},
    "model": {"name": "cnn_small", "channels": [8, 16], "hidden": 32, "dropout": 0.0},
    "train": {"epochs": 10, "batch_size": 6, "lr": 3e-3, "image_size": 32, "device": "cpu", "scheduler": "none"},
    "output_dir": "runs/cli",
}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Any:
    """A tiny model gains nothing from a second thread, and on a busy shared machine OpenMP's
    spin-waiting made training many times slower (see tests/engine/conftest.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(config path, run directory) after ``segpipe train config.yaml train.epochs=12 -q``."""
    root = tmp_path_factory.mktemp("cli")
    make_class_folders(root / "shapes", per_class=6, size=(32, 32))
    config = root / "job.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    result = runner.invoke(app, ["train", str(config), "train.epochs=12", "-q"])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "best epoch" in result.output
    return config, root / "runs" / "cli"  # relative paths resolve against the config's folder


def test_train_writes_the_run_directory(trained: tuple[Path, Path]) -> None:
    _, run = trained
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 12  # the override is in the resolved config
    assert Path(saved["data"]["train"]["root"]).is_absolute()
    assert json.loads((run / "metrics.json").read_text())["accuracy"] >= 0.9
    assert (run / "plots" / "curves.png").is_file() and (run / "best.pt").is_file()


def test_evaluate_json_gives_the_run_metrics(trained: tuple[Path, Path]) -> None:
    config, run = trained
    result = runner.invoke(app, ["evaluate", str(config), "--weights", str(run), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)  # progress lines go to stderr: stdout stays one JSON document
    assert metrics["accuracy"] == json.loads((run / "metrics.json").read_text())["accuracy"]
    assert "evaluate started" in result.stderr and "evaluate done" in result.stderr
    table = runner.invoke(app, ["evaluate", str(config), "--weights", str(run / "last.pt"), "--device", "cpu"])
    assert table.exit_code == 0 and "accuracy" in table.output and "val metrics" in table.output


def test_predict_writes_top_k_and_overlays(trained: tuple[Path, Path], tmp_path: Path) -> None:
    config, run = trained
    images = config.parent / "shapes"
    args = ["predict", "--model", str(run), "--images", str(images), "--out", str(tmp_path),
            "--format", "csv,overlay", "--topk", "3", "--device", "cpu"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "18 images" in result.output
    with (tmp_path / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 18 * 3
    right = [r for r in rows if r["rank"] == "1" and r["file"].split("/")[0] == r["category_name"]]
    assert len(right) >= 16
    assert len(list((tmp_path / "overlays").rglob("*.png"))) == 18


def test_resume_continues_from_the_last_checkpoint(trained: tuple[Path, Path]) -> None:
    config, run = trained
    result = runner.invoke(app, ["train", str(config), "train.epochs=13", "--resume", "-q"])
    assert result.exit_code == 0, result.output
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["split"] == "train_epoch"]  # fmt: skip
    assert epochs == list(range(1, 14))  # 12 epochs, then only the 13th


def test_installed_command_evaluates(trained: tuple[Path, Path]) -> None:
    config, run = trained
    exe = Path(sys.executable).with_name("segpipe")
    assert exe.exists(), "segpipe is not installed in this environment (pip install -e .)"
    proc = subprocess.run([str(exe), "evaluate", str(config), "--weights", str(run), "--json", "--device", "cpu"],
                          capture_output=True, text=True, timeout=180, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["num_samples"] == 18


def test_bad_dataset_is_one_line_naming_the_ids(tmp_path: Path) -> None:
    coco = make_shapes_coco(tmp_path / "data", n_images=3, size=(32, 32), seed=1, crowd=False)
    dataset = json.loads(coco.annotations.read_text())
    ann = next(a for a in dataset["annotations"] if isinstance(a["segmentation"], list))
    ann["segmentation"] = [[1, 2, 3, 4]]
    coco.annotations.write_text(json.dumps(dataset))
    config = tmp_path / "bad.yaml"
    train = {"images": "data/images", "annotations": "data/annotations.json"}
    config.write_text(yaml.safe_dump({**CONFIG, "data": {"train": train}}))
    result = runner.invoke(app, ["train", str(config), "-q"])
    assert result.exit_code == 2
    assert f"annotation {ann['id']}" in result.output and "skip_invalid" in result.output
    assert "Traceback" not in result.output
