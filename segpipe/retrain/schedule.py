"""The retraining schedule (``configs/schedule.yaml``, or the file ``SEGPIPE_SCHEDULE`` names)::

    debounce_seconds: 120            # POST /datasets/NAME/changed: act this long after the first signal
    models:
      shapes:                        # the model name: versions are shapes@1, shapes@2, …
        every: 6h                    # or  cron: "0 3 * * *"  (minute hour day month weekday, UTC)
        config: retrain/shapes.yaml  # a training job config (relative to this file), or the config inline
        overrides: [train.epochs=20] # optional key=value overrides of that config
        dataset:                     # optional: what to watch
          name: shapes               #   the name POST /datasets/{name}/changed uses (default: the model name)
          paths: [...]               #   files/folders to hash (default: the config's data.train + data.val)
        validation: {images: ..., masks: ...}   # the fixed validation set (default: the config's data.val)
        fine_tune_from_production: true         # start from production's weights (default: from scratch)
        queue: gpu
      cells:
        every: 1d
        config: retrain/cells.yaml   # no data section needed: the data is the project's latest snapshot
        label_studio: {project: 3, val_fraction: 0.2}   # bound to a Label Studio project (see below)
        gate: {metric: segm_AP}
        gate: {metric: iou, mode: max, min_delta: 0.01, guards: {dice: 0.02}}

A model bound to a Label Studio project trains from snapshots of it: each check pulls the project
through Label Studio's export API (`segpipe.snapshots`), splits it by image content (an image once in
validation never moves to training) and hashes the result; the project's webhook and Label Studio's
"Start training" signal the model. Bound models fine-tune from production unless
``fine_tune_from_production: false`` says otherwise.

Relative paths resolve against the schedule file's folder (those inside a referenced config against
that config's folder). The file is read again on every tick, so edits apply without restarting beat.
Configs are data: nothing here imports or evaluates what the file names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from segpipe import config as config_mod
from segpipe.config import JobConfig, Section, SourceConfig
from segpipe.errors import ConfigError, NotFoundError
from segpipe.evaluation.metric_names import is_metric, known_metrics
from segpipe.gate_config import GateConfig
from segpipe.jobs.specs import NAME_PATTERN, RetrainSpec
from segpipe.jobs.versions import dataset_paths
from segpipe.storage.uri import Location

_INTERVAL = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_interval(value: str | float) -> timedelta:
    """``90`` / ``"90s"`` / ``"15m"`` / ``"6h"`` / ``"1d"`` / ``"1h30m"`` / ``"2w"`` → a positive timedelta."""
    if isinstance(value, bool):
        raise ValueError(f"interval {value!r}: expected seconds or a duration such as 15m, 6h, 1d")  # noqa: TRY004 - for pydantic
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        parts = _INTERVAL.findall(text)
        if not parts or _INTERVAL.sub("", text).strip():
            raise ValueError(f"interval {value!r}: expected seconds or a duration such as 90s, 15m, 6h, 1d, 1h30m")
        seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in parts)
    if seconds <= 0:
        raise ValueError(f"interval {value!r} must be longer than zero")
    return timedelta(seconds=seconds)


def cron_next(expression: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` (aware) that the 5-field cron ``expression`` (UTC) fires."""
    from celery.schedules import crontab

    schedule = crontab.from_string(expression)
    schedule.nowfun = lambda: after
    return after + schedule.remaining_estimate(after)


class DatasetWatch(Section):
    name: str | None = Field(None, pattern=NAME_PATTERN, description="default: the model name")
    paths: list[Path] | None = Field(None, min_length=1, description="default: the config's data.train + data.val")


class LabelStudioBinding(Section):
    """``label_studio:`` of a schedule entry: the project whose annotations the model trains on."""

    project: int = Field(ge=1, description="the project id on SEGPIPE_LABEL_STUDIO_URL")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="the share of images held out for the gate")


class ScheduleEntry(Section):
    every: timedelta | None = None
    cron: str | None = None
    config: Path | dict[str, Any]
    overrides: list[str] = Field(default_factory=list)
    dataset: DatasetWatch = Field(default_factory=DatasetWatch)
    validation: SourceConfig | None = None
    fine_tune_from_production: bool | None = Field(None, description="default: true for a Label Studio project")
    queue: Literal["gpu", "cpu"] = "gpu"
    gate: GateConfig
    label_studio: LabelStudioBinding | None = None

    @field_validator("every", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> Any:
        return None if value is None else parse_interval(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            from celery.schedules import crontab

            try:
                crontab.from_string(value)
            except (ValueError, IndexError) as e:
                raise ValueError(f"cron {value!r}: {e} (expected 5 fields: minute hour day month weekday)") from None
        return value

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleEntry:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of 'every' (an interval such as 6h) and 'cron' (such as '0 3 * * *')")
        return self


class ScheduleFile(Section):
    debounce_seconds: float = Field(60.0, ge=0, description="dataset-changed signals: wait this long after the first")
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)


@dataclass(frozen=True)
class ModelSchedule:
    """One model's resolved schedule entry: absolute paths, the validated training config."""

    name: str
    every: timedelta | None
    cron: str | None
    config: JobConfig
    dataset_name: str
    dataset_paths: tuple[Location, ...]  # what the version's data hash covers (URIs for object-store snapshots)
    validation: SourceConfig | None  # None: a Label Studio project's, known once a snapshot is pulled
    fine_tune_from_production: bool
    gate: GateConfig
    queue: str
    label_studio: LabelStudioBinding | None = None
    # The same files on this host when dataset_paths are URIs (a snapshot this host just wrote): hashed
    # here instead of downloaded; a worker hashes its own download of dataset_paths, which is the same bytes.
    local_paths: tuple[Path, ...] | None = None

    @property
    def hash_paths(self) -> tuple[Path, ...]:
        """The local files the tick hashes for this entry."""
        if self.local_paths is not None:
            return self.local_paths
        return tuple(Path(p) for p in self.dataset_paths)

    def next_check(self, after: datetime) -> datetime:
        """When the check after one made at ``after`` is due."""
        if self.every is not None:
            return after + self.every
        return cron_next(self.cron or "", after)

    def due(
        self, checked_at: datetime | None, signalled_at: datetime | None, now: datetime, debounce: timedelta
    ) -> str | None:
        """Why the dataset should be checked at ``now`` ("first check", "dataset signalled", "schedule"),
        or None when it is not due yet."""
        if checked_at is None:
            return "first check"
        if signalled_at is not None and now >= signalled_at + debounce:
            return "dataset signalled"
        if now >= self.next_check(checked_at):
            return "schedule"
        return None

    def on_snapshot(self, images: Location, train: Location, val: Location,
                    local: tuple[Path, Path, Path] | None = None) -> ModelSchedule:
        """This entry training on a snapshot's split: COCO ``train``/``val`` files over ``images``
        (``local``: the same three on this host, when they are URIs)."""
        from dataclasses import replace

        source = {"images": images, "annotations": train}
        validation = SourceConfig(images=images, annotations=val)
        data = self.config.data.model_copy(update={"train": SourceConfig(**source), "val": validation}) \
            if self.config.data is not None else config_mod.DataConfig(train=SourceConfig(**source), val=validation)
        return replace(self, config=self.config.model_copy(update={"data": data}),
                       dataset_paths=(images, train, val), validation=validation, local_paths=local)

    def retrain_spec(self, trigger: str) -> RetrainSpec:
        """The ``retrain`` job this entry queues."""
        if self.validation is None:
            raise ConfigError(f"model {self.name}: no snapshot of its Label Studio project was pulled yet")
        return RetrainSpec(
            name=self.name,
            config=self.config,
            dataset=list(self.dataset_paths),
            validation=self.validation,
            gate=self.gate,
            fine_tune_from_production=self.fine_tune_from_production,
            trigger=trigger,
            label_studio_project=self.label_studio.project if self.label_studio is not None else None,
        )


@dataclass(frozen=True)
class Schedule:
    source: str
    debounce: timedelta
    models: dict[str, ModelSchedule]

    def get(self, name: str) -> ModelSchedule:
        if name not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            raise NotFoundError(f"{self.source}: no schedule for model {name!r}; scheduled models: {known}")
        return self.models[name]

    def watching(self, dataset: str) -> list[ModelSchedule]:
        """The entries whose dataset is named ``dataset``; `NotFoundError` (listing the names) if none."""
        found = [m for m in self.models.values() if m.dataset_name == dataset]
        if not found:
            known = ", ".join(sorted({m.dataset_name for m in self.models.values()})) or "none"
            raise NotFoundError(f"{self.source}: no schedule watches dataset {dataset!r}; watched datasets: {known}")
        return found


def load_schedule(path: str | Path) -> Schedule:
    """Read and validate a schedule file (see the module docstring); `ConfigError` names the key."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the schedule ({e.strerror or e})") from None
    return parse_schedule(config_mod.parse_yaml(text, source=str(path), aliases=True), path.parent, source=str(path))


def parse_schedule(raw: dict[str, Any], base_dir: Path, source: str = "<schedule>") -> Schedule:
    try:
        top = ScheduleFile.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source}: " + "; ".join(config_mod.explain_error(err, ScheduleFile) for err in e.errors())) from None
    models = {}
    for name, entry_raw in top.models.items():
        where = f"{source}: models.{name}"
        if not re.fullmatch(NAME_PATTERN, name):
            raise ConfigError(f"{where}: a model name takes letters, digits, '.', '_' and '-'")
        try:
            entry = ScheduleEntry.model_validate(entry_raw)
        except ValidationError as e:
            raise ConfigError(f"{where}." + f"; {where}.".join(
                config_mod.explain_error(err, ScheduleEntry) for err in e.errors())) from None
        models[name] = _resolve(name, entry, base_dir.resolve(), where)
    return Schedule(source, timedelta(seconds=top.debounce_seconds), models)


def _resolve(name: str, entry: ScheduleEntry, base: Path, where: str) -> ModelSchedule:
    try:
        if isinstance(entry.config, dict):
            config = config_mod.from_dict(entry.config, base_dir=base, overrides=entry.overrides, source=f"{where}.config")
        else:
            path = entry.config if entry.config.is_absolute() else base / entry.config
            config = config_mod.load(path, entry.overrides)
    except ConfigError as e:
        raise ConfigError(f"{where}.config: {e}") from None
    if config.name is not None and config.name != name:
        raise ConfigError(f"{where}: its config names model {config.name!r}; use the same name or leave config.name out")
    config.name = name
    _check_gate_metrics(entry.gate, config.task, where)
    bound = entry.label_studio is not None
    data = config.data
    if data is None and not bound:
        raise ConfigError(f"{where}: its config has no data section to train on")
    validation = entry.validation or (data.val if data is not None else None)
    if bound and (entry.validation is not None or entry.dataset.paths is not None):
        raise ConfigError(f"{where}: a model bound to a Label Studio project takes its data and validation set "
                          "from the project's snapshots: leave 'validation' and 'dataset.paths' out")
    paths: tuple[Path, ...]
    if bound:
        validation, paths = None, ()
    else:
        if validation is None:
            raise ConfigError(f"{where}: needs a fixed validation set: give 'validation:' or data.val in its config")
        if entry.validation is not None:
            validation = _absolute(validation, base)
        if entry.dataset.paths is not None:
            paths = tuple(config_mod.resolve_location(p, base) for p in entry.dataset.paths)
        else:
            paths = tuple(dataset_paths(config))
    return ModelSchedule(
        name=name,
        every=entry.every,
        cron=entry.cron,
        config=config,
        dataset_name=entry.dataset.name or name,
        dataset_paths=paths,
        validation=validation,
        fine_tune_from_production=bound if entry.fine_tune_from_production is None else entry.fine_tune_from_production,
        gate=entry.gate,
        queue=entry.queue,
        label_studio=entry.label_studio,
    )


def _check_gate_metrics(gate: GateConfig, task: str, where: str) -> None:
    """A misspelt gate metric is caught when the schedule loads, not after a whole training."""
    for field, name in [("metric", gate.metric), *((f"guards.{g}", g) for g in gate.guards)]:
        if not is_metric(task, name):
            raise ConfigError(f"{where}.gate.{field}: {name!r} is not a metric of task {task}; its evaluation "
                              f"reports {', '.join(known_metrics(task))}")


def _absolute(source: SourceConfig, base: Path) -> SourceConfig:
    resolved = source.model_copy(deep=True)
    config_mod.resolve_paths(resolved, base)
    return resolved
