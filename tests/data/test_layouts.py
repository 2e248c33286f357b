"""The data-layout registry: a layout's keys choose it, and every consumer (config loading, path
resolution, sources, validation, the retraining hash) asks it, so a new layout needs no other edits."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from segpipe import config as cfg
from segpipe import layouts
from segpipe.config import DataConfig, SourceConfig
from segpipe.data.sources import build_source
from segpipe.data.validate import validate_config, validate_paths
from segpipe.data.validate_common import Report
from segpipe.errors import ConfigError
from segpipe.layouts import LAYOUTS, Layout, PathKey
from segpipe.retrain.schedule import dataset_paths


def test_builtin_layouts_are_chosen_by_their_keys() -> None:
    assert SourceConfig(images="i", annotations="a.json").layout == "coco"
    assert SourceConfig(images="i", masks="m").layout == "mask_folders"
    assert SourceConfig(root="r").layout == "class_folders"
    assert set(LAYOUTS.names()) >= {"coco", "mask_folders", "class_folders"}
    with pytest.raises(ValueError, match=r"a data source takes \{images, annotations\} \(COCO\), \{images, masks\}"):
        SourceConfig(images="i")


class Calls:
    read: ClassVar[list[tuple[str, str]]] = []
    validated: ClassVar[list[dict[str, object]]] = []


def _read(source, data, task, exclude_images, exclude_annotations):
    Calls.read.append((task, str(source.path("labels"))))
    return "a source"


def _validate(source, data, task, decode):
    Calls.validated.append(source.paths())
    return Report(source=f"boxes {source.path('labels')}")


@pytest.fixture
def txt_boxes(monkeypatch: pytest.MonkeyPatch) -> Layout:
    """A layout with a path key no built-in has (registered for one test only)."""
    monkeypatch.setattr(LAYOUTS, "_entries", dict(LAYOUTS._entries))
    monkeypatch.setattr(layouts, "_ORDER", list(layouts._ORDER))
    Calls.read, Calls.validated = [], []
    return layouts.register(Layout("txt_boxes", "text box", (PathKey("images", True), PathKey("labels", True)),
                                   ("detection",), _read, _validate))


def test_a_registered_layout_reaches_every_consumer(tmp_path: Path, txt_boxes: Layout) -> None:
    (tmp_path / "job.yaml").write_text(
        "task: detection\nmodel: {name: x}\n"
        "data: {train: {images: imgs, labels: labels}, val: {images: s3://b/imgs, labels: s3://b/labels}}\n")
    job = cfg.load(tmp_path / "job.yaml")
    train = job.data.train
    assert train.layout == "txt_boxes" and train.path("labels") == tmp_path / "labels"  # resolved
    assert job.data.val.paths() == {"images": "s3://b/imgs", "labels": "s3://b/labels"}
    assert cfg.from_dict(cfg.parse_yaml(cfg.dump(job))) == job  # stored and read back
    assert dataset_paths(job) == [tmp_path / "imgs", tmp_path / "labels", "s3://b/imgs", "s3://b/labels"]
    assert build_source(train, job.data, "detection") == "a source"
    assert Calls.read == [("detection", str(tmp_path / "labels"))]
    assert set(validate_config(job)) == {"train", "val"}
    report = validate_paths(images="i", paths={"labels": "l"}, task="detection")
    assert report.source == "boxes l" and Calls.validated[-1] == {"images": Path("i"), "labels": Path("l")}
    with pytest.raises(ConfigError, match=r"data.train: text box data \(\{images, labels\}\) only fits task detection"):
        cfg.from_dict({"task": "instance", "model": {"name": "x"}, "data": {"train": {"images": "i", "labels": "l"}}})
    with pytest.raises(ValueError, match=r"or \{images, labels\} \(text box\); got \{labels\}"):
        SourceConfig.model_validate({"labels": "l"})


def test_unknown_source_keys_are_refused_with_their_place(txt_boxes: Layout) -> None:
    with pytest.raises(ConfigError, match=r"data\.train\.lables: unknown key; allowed: images"):
        cfg.from_dict({"task": "detection", "model": {"name": "x"},
                       "data": {"train": {"images": "i", "lables": "l"}}})


def test_without_the_layout_its_key_is_unknown() -> None:
    with pytest.raises(ConfigError, match=r"data\.train\.labels: unknown key"):
        cfg.from_dict({"task": "detection", "model": {"name": "x"}, "data": {"train": {"images": "i", "labels": "l"}}})
    assert DataConfig(train=SourceConfig(root="r")).train.paths() == {"root": Path("r")}


def test_a_layouts_own_keys_are_confined_and_checked_at_submit(tmp_path: Path, txt_boxes: Layout) -> None:
    from segpipe.jobs.preflight import check_data
    from segpipe.jobs.specs import confine_spec
    from segpipe.paths import PathNotAllowed

    (tmp_path / "data" / "imgs").mkdir(parents=True)
    (tmp_path / "labels").mkdir()

    def job(labels: str) -> cfg.JobConfig:
        return cfg.from_dict({"task": "detection", "model": {"name": "x"},
                              "data": {"train": {"images": "data/imgs", "labels": labels}}}, base_dir=tmp_path)

    with pytest.raises(PathNotAllowed, match=r"data\.train\.labels"):
        confine_spec(job("labels"), [tmp_path / "data"], tmp_path / "artifacts")
    confined = confine_spec(job("labels"), [tmp_path], tmp_path / "artifacts")
    check_data(confined.data, "data")
    with pytest.raises(ConfigError, match=r"data.train.labels: .*nowhere: no such folder"):
        check_data(job("nowhere").data, "data")
