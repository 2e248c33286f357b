"""What a queued job runs, per kind, as validated data. Stored (resolved) in the job row.

- ``train``:    a job config (`segpipe.config.JobConfig`); its output_dir is replaced by the job's own
                artifact folder.
- ``evaluate``: ``{model: REF, data: {...}, split: val}`` — the task comes from the model.
- ``predict``:  ``{model: REF, images: DIR, annotations: FILE?, predict: {formats, score_threshold, …}}``.
- ``retrain``:  ``{name, config: JobConfig, dataset: [PATH…], validation: SOURCE, gate: {...},
                fine_tune_from_production, trigger}`` — queued by the retraining schedule or
                ``segpipe retrain`` (`segpipe.retrain.trigger`), never through ``POST /jobs``.
- ``predict-shard``: ``{parent, index, count, spec: PredictSpec, items: [[path, image_id, name]…]}`` —
                one slice of a large predict job, queued by the parent (`segpipe.jobs.sharding`).
- ``train-node``: ``{parent, node, endpoint, run_id, leader_owner, config: JobConfig}`` — one host of a
                multi-node training, queued by the training job's first node (`segpipe.jobs.elastic`).
- ``box-mask``: ``{model: REF, image: FILE, box: [x, y, width, height] (percent), label: NAME?}`` — the
                mask of the object inside a box an annotator drew, queued by the Label Studio backend.

Which kinds exist, their queue, runner and capabilities: `segpipe.job_kinds` (the one registry).

A model REF is ``job:<train job id>``, ``NAME@production`` / ``NAME@<version>`` (model versions), or a
run directory / checkpoint path inside the data or artifact roots. Every path is confined to the
configured roots: a spec that arrives over HTTP is untrusted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, cast

from pydantic import Field, ValidationError

from segpipe import config as config_mod
from segpipe.config import DataConfig, JobConfig, ModelRef, PredictConfig, Section, SourceConfig
from segpipe.errors import ConfigError
from segpipe.gate_config import GateConfig
from segpipe.jobs.kinds import spec_model
from segpipe.paths import confine
from segpipe.storage.uri import Location

# Model names: what a version reference NAME@… and a URL path segment can carry.
NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
_VERSION_REF = config_mod.VERSION_REF


class JobSpec(Section):
    """The document of a job kind other than ``train`` (whose document is a whole `JobConfig`)."""

    def input_folder(self) -> Path | None:
        """The local folder its input images lie in, which a kind with the inbox capability empties when it
        ends (`segpipe.jobs.execute.release_inbox`); None when it reads no such folder."""
        return None

    def confine(self, roots: list[Path], artifact_root: Path) -> None:
        """Resolve every path of this spec inside `roots`, in place (model references may also point into
        the artifact root); `PathNotAllowed` otherwise. A spec that arrives over HTTP is untrusted, so every
        submittable kind's spec says how; the kinds segpipe queues itself carry already confined specs."""
        raise NotImplementedError(f"{type(self).__name__}: queued by segpipe with confined paths, never confined")


class EvaluateSpec(JobSpec):
    model: ModelRef
    data: DataConfig
    split: Literal["val", "train"] = "val"

    def confine(self, roots: list[Path], artifact_root: Path) -> None:
        _confine_data(self.data, roots)
        self.model = confine_model_ref(self.model, roots, artifact_root)


class PredictSpec(JobSpec):
    model: ModelRef
    images: Location
    annotations: Location | None = None
    predict: PredictConfig = PredictConfig()
    device: str = "auto"

    def input_folder(self) -> Path | None:
        return Path(str(self.images))

    def confine(self, roots: list[Path], artifact_root: Path) -> None:
        self.images = confine(self.images, roots, what="images")
        if self.annotations is not None:
            self.annotations = confine(self.annotations, roots, what="annotations")
        self.model = confine_model_ref(self.model, roots, artifact_root)


class RetrainSpec(JobSpec):
    """Train a new version of ``name``, evaluate it and production on ``validation``, and let ``gate`` decide."""

    name: str = Field(pattern=NAME_PATTERN)
    config: JobConfig
    dataset: list[Location] = Field(min_length=1, description="files/folders (or object-store URIs) whose content "
                                                               "hash the version records")
    validation: SourceConfig
    gate: GateConfig
    fine_tune_from_production: bool = False
    trigger: str = Field("manual", max_length=500, description="why it was queued (shown with the job)")
    label_studio_project: int | None = Field(None, ge=1, description="the Label Studio project it trains from: "
                                                                   "its backends follow a promotion")

    def confine(self, roots: list[Path], artifact_root: Path) -> None:
        confine_spec(self.config, roots, artifact_root)
        self.dataset = [confine(p, roots, what="dataset") for p in self.dataset]
        _confine_source(self.validation, roots, "validation")


class ShardSpec(JobSpec):
    """One slice of a sharded predict job: the parent's (already confined) spec and the images to do.

    ``items`` are ``[path, image_id, name]`` as the parent listed them, so a shard does the same
    images however the folder changes later."""

    parent: str
    index: int = Field(ge=0)
    count: int = Field(ge=1)
    spec: PredictSpec
    items: list[tuple[str, int | str, str]] = Field(min_length=1)


class NodeSpec(JobSpec):
    """One node (host) of a multi-node training (`segpipe.jobs.elastic`): the training job, which node this
    is, the rendezvous its first node hosts, and the training's (already confined) config.

    ``leader_owner`` is the lease owner of the training job: the node's rank 0 (wherever it runs)
    writes the job's progress under it, and a node whose leader changed stops."""

    parent: str
    node: int = Field(ge=1)
    endpoint: str = Field(max_length=300)
    run_id: str = Field(max_length=200)
    leader_owner: str = Field(max_length=255)
    config: JobConfig


class BoxMaskSpec(JobSpec):
    """One drawn box → the mask of the object inside it (`segpipe.jobs.box_mask`), for Label Studio's smart tool.

    ``box`` is Label Studio's own rectangle: top-left ``x, y`` and ``width, height`` in percent of the
    image as displayed, so the worker scales it by the size it decodes (EXIF orientation applied).
    ``label`` is a class name of the model, or None to let the model's box head choose."""

    model: ModelRef
    image: Location
    box: tuple[float, float, float, float]
    label: str | None = Field(None, max_length=500)
    device: str = "cpu"

    def input_folder(self) -> Path | None:
        return Path(str(self.image)).parent

    def confine(self, roots: list[Path], artifact_root: Path) -> None:
        self.image = confine(self.image, roots, what="image")
        self.model = confine_model_ref(self.model, roots, artifact_root)


Spec = JobConfig | EvaluateSpec | PredictSpec | RetrainSpec | ShardSpec | NodeSpec | BoxMaskSpec


def parse_spec(kind: str, raw: dict[str, Any], *, source: str = "<job>") -> Spec:
    """Validate a job document of `kind` (paths still as given); `ConfigError` names the known kinds."""
    model = spec_model(kind)
    if model is None:
        return config_mod.from_dict(raw, source=source)
    try:
        # the registry names one of the Spec models for every kind that has one
        return cast(Spec, model.model_validate(raw))
    except ValidationError as e:
        raise ConfigError(f"{source}: " + "; ".join(config_mod.explain_error(err, model) for err in e.errors())) from None


def confine_spec(spec: Spec, roots: list[Path], artifact_root: Path) -> Spec:
    """Resolve every path of `spec` inside `roots` (model refs may also point into the artifact root)."""
    if isinstance(spec, JobConfig):
        if spec.data is not None:
            _confine_data(spec.data, roots)
        weights = spec.model.weights
        if weights is not None and not config_mod.is_model_ref(weights) and not config_mod.is_named_weights(weights):
            # a run directory or checkpoint of an earlier job lies in the artifact root
            spec.model.weights = str(confine(weights, [*roots, artifact_root], what="model.weights"))
        backbone = spec.model.backbone_weights
        if backbone is not None and not config_mod.is_named_weights(backbone):
            spec.model.backbone_weights = str(confine(backbone, roots, what="model.backbone_weights"))
        return spec
    spec.confine(roots, artifact_root)  # each kind's spec confines its own paths
    return spec


def confine_model_ref(ref: str, roots: list[Path], artifact_root: Path) -> str:
    """A model reference with its path confined (a run folder or checkpoint may lie in the artifact root);
    ``job:<id>`` and ``NAME@…`` references are names, not paths."""
    if ref.startswith("job:") or _VERSION_REF.match(ref):
        return ref
    return str(confine(ref, [*roots, artifact_root], what="model"))


def _confine_data(data: DataConfig, roots: list[Path]) -> None:
    for split in ("train", "val"):
        source = getattr(data, split)
        if source is not None:
            _confine_source(source, roots, f"data.{split}")


def _confine_source(source: SourceConfig, roots: list[Path], where: str) -> None:
    for key, value in source.paths().items():  # every path key of its layout (`segpipe.layouts`)
        source.set_path(key, confine(value, roots, what=f"{where}.{key}"))


def dump_spec(spec: Spec) -> str:
    from segpipe import safe_yaml

    return safe_yaml.dump(spec.model_dump(mode="json"))  # no aliases: the worker reads it with the alias-free loader


def load_spec(kind: str, text: str, *, source: str = "<job>") -> Spec:
    # stored text (rows written before dumps were alias-free may hold aliases: bounded, not refused)
    return parse_spec(kind, config_mod.parse_yaml(text, source=source, aliases=True), source=source)


def version_ref(ref: str) -> tuple[str, str] | None:
    """``("name", "production" | "latest" | "3")`` for a model-version reference, else None."""
    m = _VERSION_REF.match(ref)
    return (m["name"], m["which"]) if m else None
