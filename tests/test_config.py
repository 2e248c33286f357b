from pathlib import Path

import pytest

from segpipe import config as cfg
from segpipe.errors import ConfigError

MINIMAL = """
task: instance
data:
  train: {images: imgs, annotations: train.json}
  val: {images: imgs, annotations: val.json}
model: {name: maskrcnn_resnet18_fpn, min_size: 128}
train: {epochs: 2, batch_size: 2}
output_dir: runs/x
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def test_load_fills_defaults_and_resolves_paths_against_the_config_folder(tmp_path: Path) -> None:
    job = cfg.load(write(tmp_path, MINIMAL))
    assert job.task == "instance"
    assert job.data is not None and job.data.train.layout == "coco"
    assert job.data.train.images == (tmp_path / "imgs").resolve()
    assert job.output_dir == (tmp_path / "runs/x").resolve()
    assert job.train.epochs == 2 and job.train.lr == 1e-3
    assert job.augment.preset == "default"
    assert job.model.params == {"min_size": 128}


def test_unknown_key_names_it_and_lists_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        cfg.load(write(tmp_path, MINIMAL.replace("epochs: 2", "epoch: 2")))
    msg = str(e.value)
    assert "train.epoch: unknown key" in msg
    assert "epochs" in msg and "batch_size" in msg and "image_size" in msg
    assert "job.yaml" in msg


def test_unknown_nested_source_key_lists_source_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.val\.imgs: unknown key; allowed: images, annotations, masks, root"):
        cfg.load(write(tmp_path, MINIMAL.replace("val: {images: imgs", "val: {imgs: imgs")))


def test_wrong_type_and_enum_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        cfg.load(write(tmp_path, MINIMAL.replace("batch_size: 2", "batch_size: two")))
    with pytest.raises(ConfigError, match=r"task"):
        cfg.load(write(tmp_path, MINIMAL.replace("task: instance", "task: panoptic")))


def test_source_layout_must_be_one_of_three(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.train: a data source takes"):
        cfg.load(write(tmp_path, MINIMAL.replace("train: {images: imgs, annotations: train.json}", "train: {images: imgs}")))


def test_layout_must_fit_task(tmp_path: Path) -> None:
    text = MINIMAL.replace("train: {images: imgs, annotations: train.json}", "train: {root: classes}")
    with pytest.raises(ConfigError, match="only fits task classification"):
        cfg.load(write(tmp_path, text))


def test_overrides_set_nested_values_with_yaml_types(tmp_path: Path) -> None:
    job = cfg.load(
        write(tmp_path, MINIMAL),
        ["train.epochs=5", "train.lr=0.01", "augment.preset=heavy", "predict.formats=[coco,polygons]", "model.min_size=256"],
    )
    assert job.train.epochs == 5 and job.train.lr == 0.01
    assert job.augment.preset == "heavy"
    assert job.predict.formats == ["coco", "polygons"]
    assert job.model.params["min_size"] == 256


def test_bad_override_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"expected key\.sub=value"):
        cfg.load(write(tmp_path, MINIMAL), ["train.epochs"])
    with pytest.raises(ConfigError, match=r"train\.epochs is a value, not a section"):
        cfg.load(write(tmp_path, MINIMAL), ["train.epochs.x=1"])
    with pytest.raises(ConfigError, match=r"train\.epochs: unknown key|train\.epochz: unknown key"):
        cfg.load(write(tmp_path, MINIMAL), ["train.epochz=1"])


def test_invalid_yaml_reports_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+, column \d+"):
        cfg.load(write(tmp_path, "task: instance\nmodel: {name: x\n"))


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        cfg.load(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="mapping of sections"):
        cfg.load(write(tmp_path, "- a\n- b\n"))


def test_preset_and_pipeline_are_exclusive(tmp_path: Path) -> None:
    text = MINIMAL + "augment: {preset: light, pipeline: {transform: {}}}\n"
    with pytest.raises(ConfigError, match="either 'preset' or 'pipeline'"):
        cfg.load(write(tmp_path, text))


def test_dump_round_trips(tmp_path: Path) -> None:
    job = cfg.load(write(tmp_path, MINIMAL))
    again = cfg.from_dict(cfg.parse_yaml(cfg.dump(job)))
    assert again == job


def test_one_rule_resolves_paths_uris_and_model_refs(tmp_path: Path) -> None:
    base = tmp_path / "specs"
    assert cfg.resolve_location("s3://bucket/data/x", base) == "s3://bucket/data/x"
    assert cfg.resolve_location("imgs", base) == str(base / "imgs")  # text stays text
    assert cfg.resolve_location(Path("../imgs"), base) == tmp_path / "imgs"
    assert cfg.resolve_location(Path("/abs/imgs"), base) == Path("/abs/imgs")
    for ref in ("shapes@production", "job:abc", "torchvision:DEFAULT", "s3://bucket/models/m.pt"):
        assert cfg.resolve_model_ref(ref, base) == ref
    assert cfg.resolve_model_ref("runs/exp", base) == str(base / "runs/exp")


def test_uris_in_a_train_config_stay_uris(tmp_path: Path) -> None:
    text = MINIMAL.replace("{images: imgs, annotations: train.json}",
                           "{images: s3://bucket/data/imgs, annotations: s3://bucket/data/train.json}")
    job = cfg.load(write(tmp_path, text))
    assert job.data.train.images == "s3://bucket/data/imgs"
    assert job.data.train.annotations == "s3://bucket/data/train.json"
    assert job.data.val.images == tmp_path / "imgs"
