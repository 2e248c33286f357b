from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from segpipe.errors import ConfigError, NotFoundError
from segpipe.retrain.schedule import (
    cron_next,
    load_schedule,
    parse_interval,
    parse_schedule,
)

T0 = datetime(2026, 3, 2, 10, 15, tzinfo=UTC)
CONFIG = {
    "task": "binary",
    "data": {"train": {"images": "data/train/images", "masks": "data/train/masks"},
             "val": {"images": "data/val/images", "masks": "data/val/masks"}, "foreground_value": 255},
    "model": {"name": "unet", "encoder_depth": 3, "decoder_channels": [8, 8, 8]},
}


def write(tmp_path: Path, models: dict, **top) -> Path:
    (tmp_path / "configs").mkdir(exist_ok=True)
    (tmp_path / "configs" / "shapes.yaml").write_text(yaml.safe_dump(CONFIG))
    path = tmp_path / "schedule.yaml"
    path.write_text(yaml.safe_dump({**top, "models": models}))
    return path


def entry(**kw) -> dict:
    return {"every": "6h", "config": "configs/shapes.yaml", "gate": {"metric": "iou"}, **kw}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90), (2.5, 2.5), ("90s", 90), ("15m", 900), ("6h", 21600), ("1d", 86400), ("1h30m", 5400), ("2w", 1209600)],
)
def test_intervals(text, seconds):
    assert parse_interval(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["6 hours", "h", "0", -5, "10x", True])
def test_bad_intervals(text):
    with pytest.raises(ValueError):
        parse_interval(text)


def test_cron_next_is_in_utc():
    assert cron_next("0 3 * * *", T0) == datetime(2026, 3, 3, 3, 0, tzinfo=UTC)
    assert cron_next("*/20 * * * *", T0) == datetime(2026, 3, 2, 10, 20, tzinfo=UTC)
    assert cron_next("0 3 * * *", datetime(2026, 3, 3, 3, 0, tzinfo=UTC)) == datetime(2026, 3, 4, 3, 0, tzinfo=UTC)


def test_defaults_come_from_the_training_config(tmp_path: Path):
    schedule = load_schedule(write(tmp_path, {"shapes": entry()}))
    m = schedule.get("shapes")
    data = tmp_path / "configs" / "data"  # the config's paths are relative to the config's folder
    assert m.dataset_paths == (data / "train/images", data / "train/masks", data / "val/images", data / "val/masks")
    assert m.validation.images == data / "val/images" and m.dataset_name == "shapes"
    assert m.config.name == "shapes" and m.every == timedelta(hours=6) and m.queue == "gpu"
    assert schedule.debounce == timedelta(seconds=60)
    assert not m.fine_tune_from_production


def test_explicit_dataset_validation_and_inline_config(tmp_path: Path):
    inline = {**CONFIG, "name": "roads"}
    path = write(tmp_path, {"roads": entry(
        config=inline, cron="0 3 * * *", every=None, overrides=["train.epochs=2"], fine_tune_from_production=True,
        dataset={"name": "roads-ds", "paths": ["data/train"]}, validation={"images": "fixed/images", "masks": "fixed/masks"},
        gate={"metric": "pixel_error", "mode": "min", "guards": {"iou": 0.02}})}, debounce_seconds=5)
    schedule = load_schedule(path)
    m = schedule.get("roads")
    assert m.dataset_paths == (tmp_path / "data/train",)  # relative to the schedule file
    assert m.validation.images == tmp_path / "fixed/images"
    assert m.config.train.epochs == 2 and m.cron == "0 3 * * *" and m.every is None
    assert m.config.data.train.images == tmp_path / "data/train/images"  # inline: relative to the schedule
    assert m.gate.guards["iou"].tolerance == 0.02 and m.fine_tune_from_production
    assert schedule.debounce == timedelta(seconds=5)
    assert [x.name for x in schedule.watching("roads-ds")] == ["roads"]
    with pytest.raises(NotFoundError, match="no schedule watches dataset 'roads'; watched datasets: roads-ds"):
        schedule.watching("roads")
    with pytest.raises(NotFoundError, match="no schedule for model 'cells'; scheduled models: roads"):
        schedule.get("cells")
    spec = m.retrain_spec("by hand")
    assert spec.name == "roads" and spec.dataset == [tmp_path / "data/train"] and spec.trigger == "by hand"


def test_due(tmp_path: Path):
    m = load_schedule(write(tmp_path, {"shapes": entry(every="1h")})).get("shapes")
    debounce = timedelta(minutes=2)
    assert m.due(None, None, T0, debounce) == "first check"
    assert m.due(T0, None, T0 + timedelta(minutes=59), debounce) is None
    assert m.due(T0, None, T0 + timedelta(hours=1), debounce) == "schedule"
    signal = T0 + timedelta(minutes=10)
    assert m.due(T0, signal, signal + timedelta(minutes=1), debounce) is None  # still inside the window
    assert m.due(T0, signal, signal + debounce, debounce) == "dataset signalled"


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ({"shapes": entry(cron="0 3 * * *")}, "models.shapes.(top level): give exactly one of 'every'"),
        ({"shapes": {k: v for k, v in entry().items() if k != "every"}}, "give exactly one of 'every'"),
        ({"shapes": entry(every="soon")}, "models.shapes.every: interval 'soon'"),
        ({"shapes": entry(every=None, cron="0 25 * * *")}, "models.shapes.cron: cron '0 25 * * *'"),
        ({"shapes": entry(cron_job="x")}, "models.shapes.cron_job: unknown key; allowed: every, cron, config"),
        ({"shapes": entry(gate={"metric": "iou", "min_delta": -1})}, "models.shapes.gate.min_delta"),
        ({"shapes": entry(gate={"metric": "iou", "guard": {}})}, "models.shapes.gate.guard: unknown key; allowed: metric"),
        ({"shapes": entry(gate={"metric": "iuo"})},
         "models.shapes.gate.metric: 'iuo' is not a metric of task binary; its evaluation reports iou, dice"),
        ({"shapes": entry(gate={"metric": "iou", "guards": {"dcie": 0.1}})}, "models.shapes.gate.guards.dcie: 'dcie'"),
        ({"bad name": entry()}, "models.bad name: a model name takes letters"),
        ({"shapes": entry(config="configs/missing.yaml")}, "models.shapes.config:"),
        ({"shapes": entry(config={**CONFIG, "name": "other"})}, "its config names model 'other'"),
        ({"shapes": entry(config={k: v for k, v in CONFIG.items() if k != "data"})}, "has no data section"),
        ({"shapes": entry(config={**CONFIG, "data": {"train": CONFIG["data"]["train"]}})}, "needs a fixed validation set"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, models: dict, message: str):
    with pytest.raises(ConfigError) as info:
        load_schedule(write(tmp_path, models))
    assert message in str(info.value)
    assert str(tmp_path / "schedule.yaml") in str(info.value)


def test_top_level_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="debounce_seconds"):
        parse_schedule({"debounce_seconds": -1, "models": {}}, tmp_path)
    with pytest.raises(ConfigError, match="models_list: unknown key; allowed: debounce_seconds, models"):
        parse_schedule({"models_list": []}, tmp_path)
    with pytest.raises(ConfigError, match="cannot read the schedule"):
        load_schedule(tmp_path / "none.yaml")


def test_the_shipped_sample_schedule_is_valid():
    schedule = load_schedule(Path(__file__).parents[2] / "configs" / "schedule.yaml")
    m = schedule.get("smoke_binary")
    assert m.dataset_name == "smoke-binary" and m.gate.metric == "iou" and m.fine_tune_from_production
    assert m.config.train.epochs == 8 and m.dataset_paths[0].parts[-4:] == ("smoke", "binary", "train", "images")


def test_a_model_bound_to_a_label_studio_project_needs_no_data_section(tmp_path: Path):
    config = {k: v for k, v in CONFIG.items() if k != "data"}
    plan = load_schedule(write(tmp_path, {"cells": entry(config=config, label_studio={"project": 3})}))
    m = plan.get("cells")
    assert m.label_studio is not None and m.label_studio.project == 3 and m.label_studio.val_fraction == 0.2
    assert m.fine_tune_from_production  # the default for a bound model
    assert m.validation is None and m.dataset_paths == ()
    with pytest.raises(ConfigError, match="no snapshot of its Label Studio project"):
        m.retrain_spec("test")
    images, train, val = tmp_path / "s/images", tmp_path / "s/train.json", tmp_path / "s/val.json"
    on = m.on_snapshot(images, train, val)
    assert on.dataset_paths == (images, train, val)
    assert on.config.data.train.annotations == train and on.config.data.val.annotations == val
    spec = on.retrain_spec("signalled")
    assert spec.validation.annotations == val and spec.fine_tune_from_production
    scratch = load_schedule(write(tmp_path, {"cells": entry(config=config, label_studio={"project": 3},
                                                           fine_tune_from_production=False)}))
    assert not scratch.get("cells").fine_tune_from_production


def test_a_bound_model_takes_no_other_validation_set(tmp_path: Path):
    with pytest.raises(ConfigError, match="takes its data and validation set from the project's snapshots"):
        load_schedule(write(tmp_path, {"cells": entry(label_studio={"project": 3},
                                                      validation={"images": "v", "masks": "m"})}))
    with pytest.raises(ConfigError, match=r"label_studio\.project"):
        load_schedule(write(tmp_path, {"cells": entry(label_studio={"project": 0})}))
