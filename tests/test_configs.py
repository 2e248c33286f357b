"""The shipped job configs (configs/**.yaml): they load, name models that exist for their task, build
their augmentation, keep runs out of configs/, and validate on a split other than the training one.
The smoke configs are also checked against the data `segpipe shapes` writes. No config's real data
(../shared, data/) is needed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from segpipe.config import JobConfig, dump, from_dict, load, parse_yaml
from segpipe.data.augment import build_transform
from segpipe.data.smoke import write_smoke_data
from segpipe.data.sources import build_source
from segpipe.models import build_model
from segpipe.models.registry import MODELS, parse_params

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
# schedule.yaml (scheduled retraining) is not a job config
JOB_CONFIGS = sorted(p for p in CONFIGS.rglob("*.y*ml") if p.name not in ("schedule.yaml", "schedule.yml"))
SMOKE = sorted((CONFIGS / "smoke").glob("*.yaml"))


def ids(paths: list[Path]) -> list[str]:
    return [p.relative_to(CONFIGS).as_posix() for p in paths]


def test_there_is_a_config_for_every_task_kind() -> None:
    tasks = {load(p).task for p in JOB_CONFIGS}
    assert tasks == {"classification", "semantic", "binary", "instance", "detection"}
    assert {load(p).task for p in SMOKE} == tasks


@pytest.mark.parametrize("path", JOB_CONFIGS, ids=ids(JOB_CONFIGS))
def test_config_loads_and_names_a_model_for_its_task(path: Path) -> None:
    config = load(path)
    entry = MODELS.entry(config.model.name)  # unknown names raise, listing the known ones
    assert config.task in entry.tags, f"{config.model.name} does not do {config.task}"
    parse_params(config.model.name, entry.obj.params, config.model.params)
    build_transform(config.augment, config.task, config.train.image_size, train=True)


@pytest.mark.parametrize("path", JOB_CONFIGS, ids=ids(JOB_CONFIGS))
def test_runs_go_outside_configs_and_validation_is_a_separate_split(path: Path) -> None:
    config = load(path)
    assert not config.output_dir.is_relative_to(CONFIGS), f"{path.name} would write its run into configs/"
    assert config.output_dir.is_relative_to(REPO / "runs")
    assert config.data is not None and config.data.val is not None
    assert config.data.val != config.data.train, "validating on the training split measures nothing"


def test_relative_paths_resolve_against_the_config_folder() -> None:
    config = load(CONFIGS / "binary" / "isbi_unet.yaml")
    assert config.data is not None and config.data.train.images == REPO / "data" / "isbi" / "train" / "images"
    coco = load(CONFIGS / "instance" / "coco128_maskrcnn.yaml")
    assert coco.data is not None
    assert coco.data.train.images == REPO.parent / "shared" / "data" / "coco128" / "images"


@pytest.fixture(scope="module")
def smoke_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of configs/smoke next to freshly generated data/smoke, as in a checkout."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(CONFIGS / "smoke", root / "configs" / "smoke")
    write_smoke_data(root / "data" / "smoke", n_train=6, n_val=3)
    return root


@pytest.mark.parametrize("path", SMOKE, ids=ids(SMOKE))
def test_smoke_config_finds_its_data_and_builds_its_model(smoke_repo: Path, path: Path) -> None:
    config: JobConfig = load(smoke_repo / "configs" / "smoke" / path.name)
    assert config.data is not None and config.data.val is not None
    train = build_source(config.data.train, config.data, config.task)
    val = build_source(config.data.val, config.data, config.task)
    assert len(train) > 0 and len(val) > 0
    assert train.category_map.ids == val.category_map.ids
    build_model(config.model, config.task, train.category_map.num_labels)


@pytest.mark.parametrize("path", JOB_CONFIGS, ids=ids(JOB_CONFIGS))
def test_resolved_config_round_trips(path: Path) -> None:
    """The copy saved in every checkpoint must load again (evaluate / predict read it)."""
    config = load(path)
    again = from_dict(parse_yaml(dump(config)))
    assert again == config
