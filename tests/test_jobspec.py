"""The retrain job spec: round trip through the job row's YAML, errors that name the key, confinement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from segpipe.errors import ConfigError
from segpipe.jobs.specs import RetrainSpec, confine_spec, dump_spec, load_spec, parse_spec
from segpipe.paths import PathNotAllowed


def retrain_raw(root: Path, **extra: Any) -> dict[str, Any]:
    source = {"images": str(root / "val/images"), "masks": str(root / "val/masks")}
    return {
        "name": "roads",
        "config": {"task": "binary", "model": {"name": "unet"},
                   "data": {"train": {"images": str(root / "train/images"), "masks": str(root / "train/masks")}}},
        "dataset": [str(root / "train")],
        "validation": source,
        "gate": {"metric": "iou", "min_delta": 0.01, "guards": {"dice": 0.02}},
        **extra,
    }


def test_round_trip(tmp_path: Path) -> None:
    spec = parse_spec("retrain", retrain_raw(tmp_path, fine_tune_from_production=True, trigger="schedule"))
    assert isinstance(spec, RetrainSpec) and spec.gate.guards["dice"].tolerance == 0.02
    again = load_spec("retrain", dump_spec(spec))
    assert again == spec


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "no spaces"}, "name: String should match pattern"),
        ({"dataset": []}, "dataset: List should have at least 1 item"),
        ({"gate": {"metric": "iou", "bar": 1}}, "gate.bar: unknown key; allowed: metric, mode, min_delta, guards"),
        ({"config": {"task": "binary"}}, "config.model: required key is missing"),
        ({"extra": 1}, "extra: unknown key; allowed: name, config, dataset, validation, gate"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec("retrain", {**retrain_raw(tmp_path), **change}, source="retrain job")
    assert message in str(info.value)


def test_unknown_kinds_list_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown job kind 'fit'; known: train, evaluate, predict, retrain, predict-shard"):
        parse_spec("fit", {})


def test_every_path_is_confined(tmp_path: Path) -> None:
    inside, outside = tmp_path / "data", tmp_path / "secret"
    spec = confine_spec(parse_spec("retrain", retrain_raw(inside)), [inside], tmp_path / "artifacts")
    assert spec.dataset == [inside / "train"]
    for where, raw in [
        ("dataset", {**retrain_raw(inside), "dataset": [str(outside)]}),
        ("validation.images", {**retrain_raw(inside), "validation": {"images": str(outside), "masks": str(inside)}}),
        ("data.train.images", {**retrain_raw(inside), "config": retrain_raw(outside)["config"]}),
        ("model.weights", {**retrain_raw(inside), "config": {**retrain_raw(inside)["config"],
                                                             "model": {"name": "unet", "weights": str(outside / "w.pt")}}}),
    ]:
        with pytest.raises(PathNotAllowed, match=f"{where} .*outside the allowed data roots"):
            confine_spec(parse_spec("retrain", raw), [inside], tmp_path / "artifacts")
