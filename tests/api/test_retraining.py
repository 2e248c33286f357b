"""Promotion decisions, rollback, retraining by hand and dataset-changed signals over HTTP (no worker:
queued jobs stay queued)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from segpipe.data.synthetic import make_mask_folders
from segpipe.settings import Settings
from segpipe.stores import Stores
from tests.api.conftest import ANNOTATOR, ENGINEER, make_settings


def write_schedule(tmp_path: Path) -> Path:
    data = tmp_path / "data" / "shapes"
    for split in ("train", "val"):
        make_mask_folders(data / split, n_images=2, size=(16, 16), binary=True, seed=1)
    config = {
        "task": "binary",
        "data": {"train": {"images": str(data / "train/images"), "masks": str(data / "train/masks")},
                 "val": {"images": str(data / "val/images"), "masks": str(data / "val/masks")},
                 "foreground_value": 255},
        "model": {"name": "unet", "encoder_depth": 3, "decoder_channels": [8, 8, 8]},
    }
    schedule = {"debounce_seconds": 90, "models": {
        "roads": {"every": "1h", "config": config, "dataset": {"name": "roads-labels"}, "gate": {"metric": "iou"}},
        "lanes": {"cron": "0 3 * * *", "config": config, "dataset": {"name": "roads-labels"}, "gate": {"metric": "iou"}},
    }}
    path = tmp_path / "schedule.yaml"
    path.write_text(yaml.safe_dump(schedule))
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "data").mkdir(exist_ok=True)
    return make_settings(tmp_path, schedule=write_schedule(tmp_path))


def test_decisions_promotion_and_rollback(client: TestClient, stores: Stores) -> None:
    for iou in (0.5, 0.6, 0.7):
        stores.versions.register("roads", "binary", "task: binary\n", metrics={"iou": iou})
    r = client.post("/models/roads/promote", json={"version": 1}, headers=ENGINEER)
    assert r.status_code == 200 and r.json()["stage"] == "production"
    checks = [{"metric": "iou", "role": "primary", "mode": "max", "candidate": 0.6, "production": 0.5,
               "change": 0.1, "limit": 0.05, "passed": True}]
    stores.decisions.record("roads", 2, "promoted", "iou 0.6 vs 0.5", source="gate", metric="iou", checks=checks,
                            candidate_metrics={"iou": 0.6}, production_metrics={"iou": 0.5})
    stores.decisions.record("roads", 3, "rejected", "iou 0.55 vs 0.6", source="gate", metric="iou",
                            candidate_metrics={"iou": 0.55}, production_metrics={"iou": 0.6})

    detail = client.get("/models/roads", headers=ANNOTATOR).json()
    assert detail["production_version"] == 2
    decisions = detail["decisions"]
    assert [(d["version"], d["outcome"], d["source"]) for d in decisions] == [
        (3, "rejected", "gate"), (2, "promoted", "gate"), (1, "promoted", "manual")]
    assert decisions[1]["checks"] == checks and decisions[1]["production_metrics"] == {"iou": 0.5}
    assert decisions[2]["decided_by"] and decisions[2]["reason"].startswith("promoted by hand by ")
    limited = client.get("/models/roads/decisions", params={"limit": 1}, headers=ANNOTATOR).json()
    assert [d["version"] for d in limited] == [3]

    assert client.post("/models/roads/rollback", headers=ANNOTATOR).status_code == 403
    r = client.post("/models/roads/rollback", headers=ENGINEER)
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["previous_version"], r.json()["source"]) == (1, 2, "rollback")
    assert client.get("/models/roads", headers=ANNOTATOR).json()["production_version"] == 1
    r = client.post("/models/roads/rollback", headers=ENGINEER)
    assert r.status_code == 422 and "no version before 1 was ever production" in r.json()["error"]
    r = client.post("/models/roads/rollback", json={"to": 3}, headers=ENGINEER)
    assert r.status_code == 200 and r.json()["version"] == 3
    assert client.post("/models/roads/rollback", json={"to": 9}, headers=ENGINEER).status_code == 404
    assert client.post("/models/roads/rollback", json={"to": 0}, headers=ENGINEER).status_code == 422
    assert client.get("/models/nothing/decisions", headers=ANNOTATOR).status_code == 404
    assert client.post("/models/nothing/rollback", headers=ENGINEER).status_code == 404


def test_retrain_by_hand_queues_one_job(client: TestClient, stores: Stores) -> None:
    assert client.post("/models/roads/retrain", headers=ANNOTATOR).status_code == 403
    first = client.post("/models/roads/retrain", headers=ENGINEER)
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["created"] and body["state"] == "queued"
    job = stores.jobs.get(body["job_id"])
    assert (job.kind, job.model_name, job.queue) == ("retrain", "roads", "gpu")
    again = client.post("/models/roads/retrain", headers=ENGINEER)
    assert again.status_code == 200 and again.json() == {**body, "created": False}
    r = client.post("/models/cells/retrain", headers=ENGINEER)
    assert r.status_code == 404 and "no schedule for model 'cells'; scheduled models: lanes, roads" in r.json()["error"]
    # a retrain job is not something POST /jobs takes: it would bypass the per-model lock
    assert client.post("/jobs", json={"kind": "retrain", "config": {}}, headers=ENGINEER).status_code == 422


def test_dataset_changed_signals_are_debounced(client: TestClient, stores: Stores) -> None:
    assert client.post("/datasets/roads-labels/changed", headers=ANNOTATOR).status_code == 403
    first = client.post("/datasets/roads-labels/changed", headers=ENGINEER)
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["dataset"] == "roads-labels" and body["debounce_seconds"] == 90
    assert sorted(m["name"] for m in body["models"]) == ["lanes", "roads"]
    for m in body["models"]:
        signalled = datetime.fromisoformat(m["signalled_at"])
        assert (datetime.fromisoformat(m["check_after"]) - signalled).total_seconds() == 90
    second = client.post("/datasets/roads-labels/changed", headers=ENGINEER).json()
    assert second["models"] == body["models"]  # folded into the first signal
    assert stores.retrain.get("roads").signalled_at is not None
    assert stores.jobs.list(kind="retrain")[0] == []  # the tick queues, after the window
    r = client.post("/datasets/roads/changed", headers=ENGINEER)
    assert r.status_code == 404 and "watched datasets: roads-labels" in r.json()["error"]


def test_no_schedule_file_is_a_404(tmp_path: Path, sqlite_stores: Stores) -> None:
    from segpipe.api.app import create_app
    from workers.celery_app import create_app as create_celery

    settings = make_settings(tmp_path, schedule=tmp_path / "missing.yaml")
    with TestClient(create_app(settings, sqlite_stores, create_celery(settings))) as client:
        r = client.post("/datasets/roads/changed", headers=ENGINEER)
        assert r.status_code == 404 and "no retraining schedule file" in r.json()["error"]
        assert client.post("/models/roads/retrain", headers=ENGINEER).status_code == 404
