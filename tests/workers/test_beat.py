"""Beat's retraining entry and the tick task (its body is called directly here: running it on a
worker through Redis is covered by the integration tests' worker, which serves the same task module)."""

from __future__ import annotations

from pathlib import Path

import yaml

from segpipe.settings import Settings
from workers.beat import RETRAIN_TICK, retrain_beat_entries
from workers.celery_app import create_app


def test_the_tick_is_scheduled_only_when_a_schedule_exists(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, schedule=tmp_path / "schedule.yaml", retrain_tick_seconds=15)
    assert retrain_beat_entries(settings) == {}
    assert set(create_app(settings).conf.beat_schedule) == {"reconcile"}
    settings.schedule.write_text("models: {}\n")
    entry = retrain_beat_entries(settings)["retrain-tick"]
    assert entry == {"task": RETRAIN_TICK, "schedule": 15, "options": {"queue": "cpu", "expires": 15}}
    assert create_app(settings).conf.beat_schedule["retrain-tick"] == entry


def test_the_tick_task_is_registered_and_ticks(tmp_path: Path, monkeypatch) -> None:
    from segpipe.settings import get_settings
    from workers import tasks

    assert tasks.app.tasks[RETRAIN_TICK].run is tasks.retrain_tick.run
    schedule = tmp_path / "schedule.yaml"
    config = {"task": "binary", "model": {"name": "unet"},
              "data": {"train": {"images": "gone/images", "masks": "gone/masks"},
                       "val": {"images": "gone/images", "masks": "gone/masks"}}}
    schedule.write_text(yaml.safe_dump({"models": {"roads": {"every": "1h", "config": config, "gate": {"metric": "iou"}}}}))
    for key, value in {"SEGPIPE_HOME": tmp_path / "home", "SEGPIPE_SCHEDULE": schedule,
                       "SEGPIPE_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
                       "SEGPIPE_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}"}.items():
        monkeypatch.setenv(key, str(value))
    get_settings.cache_clear()
    monkeypatch.setattr(tasks, "_stores", None)
    try:
        (result,) = tasks.retrain_tick()  # the dataset folder does not exist: a failed check, logged
        assert result["name"] == "roads" and result["outcome"] == "failed"
        assert "dataset path does not exist" in result["detail"]
        schedule.write_text("models: [oops]\n")
        assert tasks.retrain_tick() == []  # an invalid schedule checks nothing (and says so in the log)
    finally:
        if tasks._stores is not None:
            tasks._stores.close()
        get_settings.cache_clear()
