"""``segpipe models | promote | rollback | retrain | schedule`` over a real SQLite store and broker file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from segpipe.cli import app
from segpipe.data.synthetic import make_mask_folders
from segpipe.retrain.promotion import cli_actor
from segpipe.retrain.schedule import load_schedule
from segpipe.settings import get_settings
from segpipe.stores import Stores

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    data = tmp_path / "data" / "shapes"
    for split in ("train", "val"):
        make_mask_folders(data / split, n_images=2, size=(16, 16), binary=True, seed=1)
    config = {"task": "binary", "model": {"name": "unet", "encoder_depth": 3, "decoder_channels": [8, 8, 8]},
              "data": {"train": {"images": str(data / "train/images"), "masks": str(data / "train/masks")},
                       "val": {"images": str(data / "val/images"), "masks": str(data / "val/masks")},
                       "foreground_value": 255}}
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(yaml.safe_dump({"models": {"roads": {"every": "6h", "config": config, "gate": {"metric": "iou"}}}}))
    values = {
        "SEGPIPE_HOME": str(tmp_path / "home"),
        "SEGPIPE_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "SEGPIPE_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        "SEGPIPE_DATA_ROOTS": str(tmp_path / "data"),
        "SEGPIPE_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "SEGPIPE_SCHEDULE": str(schedule),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield values
    get_settings.cache_clear()


@pytest.fixture
def stores(env: dict[str, str]) -> Iterator[Stores]:
    opened = Stores.open(env["SEGPIPE_DATABASE_URL"], env["SEGPIPE_ARTIFACT_ROOT"])
    yield opened
    opened.close()


def run(*args: str) -> Result:
    return runner.invoke(app, list(args), env={"COLUMNS": "220"})


def test_architectures_moved_behind_a_flag(env) -> None:
    result = run("models", "--architectures", "--task", "binary", "--json")
    assert result.exit_code == 0, result.output
    names = {row["name"] for row in json.loads(result.output)}
    assert "unet" in names and "cnn_small" not in names
    assert "unet" in run("models", "--list").output


def test_models_promote_and_rollback(env, stores: Stores) -> None:
    assert "no model versions yet" in run("models").output
    for iou in (0.5, 0.7):
        metrics = {"miou": 0.9, "dice": 0.8, "pixel_accuracy": 0.95, "iou": iou}
        stores.versions.register("roads", "binary", "cfg", metrics=metrics, dataset_hash="sha256:" + "a" * 64)
    assert run("promote", "roads", "1").exit_code == 0
    result = run("promote", "roads", "2", "--reason", "better on the new\n  night images")
    assert result.exit_code == 0 and "roads: version 2 is production" in result.output
    stores.decisions.record("roads", 2, "rejected", "iou fell below the bar", source="gate")
    listing = run("models")
    assert listing.exit_code == 0 and "roads" in listing.output and "v2 rejected" in listing.output
    detail = run("models", "roads")
    assert detail.exit_code == 0
    for text in ("v2", "production", "archived", "iou 0.700 miou 0.900 dice 0.800", "aaaaaaaaaaaa", "iou fell below the bar",
                 f"promoted by hand by {cli_actor()}, replacing version 1: better on the new night images"):
        assert text in detail.output, text
    as_json = json.loads(run("models", "roads", "--json").output)
    assert [v["stage"] for v in as_json["versions"]] == ["production", "archived"]
    assert [d["source"] for d in as_json["decisions"]] == ["gate", "manual", "manual"]

    back = run("rollback", "roads")
    assert back.exit_code == 0 and f"rolled back by {cli_actor()} from version 2 to version 1" in back.output
    assert "roads@production now get v1" in back.output
    assert "v1 promoted (rollback)" in run("models").output
    assert run("models", "--task", "binary").exit_code == 2  # --task only filters --architectures
    again = run("rollback", "roads")
    assert again.exit_code == 2 and "no version before 1 was ever production" in again.output
    assert run("rollback", "roads", "--to", "2", "--reason", "v1 misses cars").exit_code == 0
    assert stores.decisions.list("roads")[0].reason.endswith(": v1 misses cars")
    assert stores.decisions.list("roads")[0].decided_by == cli_actor()
    assert run("models", "roads", "--config", "1").output == "cfg"
    assert run("models", "--config", "1").exit_code == 2
    assert run("models", "roads", "--config", "7").exit_code == 2
    missing = run("models", "nothing")
    assert missing.exit_code == 2 and "model 'nothing' has no versions" in missing.output
    assert run("promote", "roads", "9").exit_code == 2


def test_retrain_and_schedule(env, stores: Stores) -> None:
    first = run("retrain", "roads")
    assert first.exit_code == 0 and "queued retrain job" in first.output
    (job,), _ = stores.jobs.list(kind="retrain")
    second = run("retrain", "roads")
    assert second.exit_code == 0 and f"already being retrained: job {job.id} is queued" in second.output
    unknown = run("retrain", "cells")
    assert unknown.exit_code == 2 and "no schedule for model 'cells'; scheduled models: roads" in unknown.output

    shown = run("schedule", "--tick")
    assert shown.exit_code == 0, shown.output
    assert "every 6h" in shown.output and job.id[:12] in shown.output
    assert f"roads: retrain job {job.id} is queued" in shown.output  # first check: busy with the manual job
    rows = json.loads(run("schedule", "--json").output)
    assert rows[0]["name"] == "roads" and rows[0]["active_job"] == job.id and rows[0]["last_check"]
    assert rows[0]["last_note"] == f"retrain job {job.id} is queued"
    slot = stores.retrain.signal("roads")  # the dataset changed: checked once the debounce window closes
    rows = json.loads(run("schedule", "--json").output)
    debounce = load_schedule(Path(env["SEGPIPE_SCHEDULE"])).debounce
    assert rows[0]["signal_checked_from"] == str(slot.signalled_at + debounce)
    assert "a dataset signal waits" in run("schedule").output
    none = run("schedule", "--schedule", str(Path(env["SEGPIPE_HOME"]) / "none.yaml"))
    assert none.exit_code == 2 and "no retraining schedule file" in none.output
