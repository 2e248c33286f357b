"""Request and response bodies of the HTTP API (pydantic), built from store rows by the ``from_*`` helpers.

Times are ISO 8601 UTC. Boxes are ``[x, y, w, h]`` pixels; masks compressed COCO RLE
``{"size": [h, w], "counts": str}``; category ids the dataset's own (original COCO) ids.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from segpipe import job_kinds
from segpipe.stores import Job, ModelVersion, PromotionDecision

MAX_INT64 = 2**63 - 1  # SQL OFFSET / 64-bit columns; larger numbers are refused at the door, not sent on
MAX_INT32 = 2**31 - 1  # model version numbers are INTEGER columns
# from the one registry of job kinds (`segpipe.job_kinds`): what may be submitted, and what may be listed
JobKindIn = Literal[job_kinds.submittable()]  # type: ignore[valid-type]
JobKind = Literal[job_kinds.names()]  # type: ignore[valid-type]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
QueueName = Literal["gpu", "cpu"]


class ErrorOut(BaseModel):
    error: str = Field(description="what went wrong, for a person: names the key, path, file or id")
    detail: Any = Field(None, description="structured detail (validation errors), or null")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    store: dict[str, Any] = Field(description="ok, dialect, and the error when the store is unreachable")
    broker: str = Field(description="the broker URL's kind (redis, sqla+sqlite, …); never the URL itself")
    version: str


def _one_of_config(schema: dict[str, Any]) -> None:
    """OpenAPI: exactly one of config / config_yaml, neither null."""
    props = schema["properties"]
    props["config"] = {"type": "object", "additionalProperties": True, "description": props["config"].get("description")}
    props["config_yaml"] = {"type": "string", "description": props["config_yaml"].get("description")}
    schema["oneOf"] = [{"required": ["config"]}, {"required": ["config_yaml"]}]


class JobSubmit(BaseModel):
    """A job to queue. The config is untrusted: validated, size-limited, every path confined to the data roots."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_one_of_config)

    kind: JobKindIn
    config: dict[str, Any] | None = Field(None, description="the job document as JSON")
    config_yaml: str | None = Field(None, description="the job document as YAML text (instead of config)")
    queue: QueueName | None = Field(None, description="default: gpu")
    model_name: str | None = Field(None, max_length=255, description="model to register a trained version under")

    @model_validator(mode="after")
    def _one_config(self) -> JobSubmit:
        if (self.config is None) == (self.config_yaml is None) or len(self.model_fields_set & {"config", "config_yaml"}) != 1:
            raise ValueError("give exactly one of 'config' (a mapping) or 'config_yaml' (YAML text)")
        return self

    def spec(self) -> dict[str, Any] | str:
        """The job document as given: a mapping, or YAML text."""
        return self.config if self.config is not None else str(self.config_yaml)


class Progress(BaseModel):
    """What the worker last reported; further keys a job kind reports are kept as they are."""

    model_config = ConfigDict(extra="allow")

    phase: str | None = None
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    steps: int | None = None
    images_done: int | None = None
    images_total: int | None = None
    images_per_s: float | None = Field(None, description="training: images per second of the training steps")
    eta_s: float | None = Field(None, description="training: seconds left, validation passes included")
    metrics: dict[str, Any] | None = None
    shards: int | None = Field(None, description="a sharded predict job: how many shards it was split into")
    shards_done: int | None = Field(None, description="a sharded predict job: shards ended (set when all have)")
    images_failed: int | None = Field(None, description="predict: images skipped because they could not be read "
                                                        "or were over the image limits")
    failed_images: list[dict[str, str]] | None = Field(
        None, description="predict: the skipped images, {image, reason} (the first 100; the job's summary.json "
                          "artifact lists all)")


class JobOut(BaseModel):
    id: str
    kind: str
    state: JobState
    queue: str
    progress: Progress
    error: str | None = Field(None, description="one line: why the job failed")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    worker: str | None
    attempts: int
    cancel_requested: bool
    model_name: str | None
    model_version: int | None
    submitted_by: str | None
    parent_id: str | None = Field(None, description="a predict-shard job: the predict job it is a shard of")
    artifacts: dict[str, str] = Field(description="artifact name → path inside the job's folder")


class JobDetail(JobOut):
    config: str = Field(description="the resolved job document (YAML) the worker runs")
    traceback: str | None = Field(None, description="the failure's full text (engineer role and up)")


class JobPage(BaseModel):
    items: list[JobOut]
    total: int = Field(description="jobs matching the filters, over all pages")
    limit: int
    offset: int


class ArtifactOut(BaseModel):
    name: str
    path: str = Field(description="relative to the job's folder; GET /jobs/{id}/artifacts/{path} downloads it")
    kind: Literal["file", "folder", "missing"]
    bytes: int | None = None


class ArtifactList(BaseModel):
    job_id: str
    artifacts: list[ArtifactOut]


class FolderListing(BaseModel):
    job_id: str
    folder: str
    files: list[str] = Field(description="paths relative to the job's folder, sorted")
    truncated: bool


class InstanceOut(BaseModel):
    instance: int
    category_id: int | None
    category_name: str | None
    score: float | None
    bbox: list[float] | None
    rle: dict[str, Any] | None


class PolygonInstanceOut(BaseModel):
    instance: int
    category_id: int | None
    category_name: str | None
    score: float | None
    bbox: list[float] | None
    polygons: list[list[float]] = Field(description="COCO polygons [x1, y1, x2, y2, …] (outer boundaries)")


class ImageMasks(BaseModel):
    image_key: str
    job_id: str
    height: int | None
    width: int | None
    instances: list[InstanceOut]


class ImagePolygons(BaseModel):
    """The one polygons schema of segpipe (the ``polygons`` export's per-image file), plus the job."""

    image_id: int | str = Field(description="the image key; an int when it is a COCO image id")
    file_name: str = Field(description="the image key (the API does not know the file's name)")
    job_id: str
    height: int | None
    width: int | None
    objects: list[PolygonInstanceOut]


class UploadedFile(BaseModel):
    filename: str = Field(description="the name the client sent")
    stored_as: str = Field(description="the safe file name on the server")
    image_key: str = Field(description="the key a predict job stores this image's masks under")
    format: str
    width: int
    height: int
    bytes: int


class UploadOut(BaseModel):
    upload_id: str
    images: str = Field(description="use as a predict job's 'images' (relative to the first data root)")
    files: list[UploadedFile]


class ModelVersionOut(BaseModel):
    name: str
    version: int
    task: str
    stage: Literal["candidate", "production", "archived"]
    dataset_hash: str | None
    metrics: dict[str, Any]
    checkpoint: str | None
    parent_version: int | None
    job_id: str | None
    created_at: datetime
    load_report: dict[str, Any] | None = None  # what its starting weights gave (model.weights), if any
    exports: dict[str, Any] = {}  # `segpipe export` results by format


class ModelSummary(BaseModel):
    name: str
    task: str
    versions: int
    latest_version: int
    production_version: int | None


class GateCheckOut(BaseModel):
    metric: str
    role: Literal["primary", "guard"]
    mode: Literal["max", "min"]
    candidate: float | None
    production: float | None
    change: float | None = Field(description="the improvement in the metric's mode (positive = better)")
    limit: float = Field(description="what the check needed: change ≥ limit (+min_delta, or -tolerance)")
    passed: bool


class DecisionOut(BaseModel):
    """A promotion decision: by the retraining gate, by hand, or a rollback."""

    name: str
    version: int = Field(description="the version decided about")
    previous_version: int | None = Field(description="the production version at that moment")
    outcome: Literal["promoted", "rejected"]
    source: Literal["gate", "manual", "rollback"]
    reason: str
    metric: str | None = Field(description="the gate's primary metric")
    candidate_metrics: dict[str, float]
    production_metrics: dict[str, float] | None = Field(description="same validation set, same job; None: no production")
    checks: list[GateCheckOut]
    job_id: str | None
    decided_by: str | None
    created_at: datetime


class ModelDetail(BaseModel):
    name: str
    production_version: int | None
    versions: list[ModelVersionOut] = Field(description="newest first")
    decisions: list[DecisionOut] = Field(default_factory=list, description="newest first (at most 100)")


def _json_integer(value: Any) -> Any:  # noqa: ANN401 - validator input
    """A JSON integer (1 or 1.0) or null, never a boolean or a string: JSON ``true`` is not version 1."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError("must be a JSON integer")
    return value


VersionNumber = Annotated[int, BeforeValidator(_json_integer)]


class Promote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: VersionNumber = Field(ge=1, le=MAX_INT32)
    reason: str | None = Field(None, max_length=1000, description="why, in a few words: kept with the decision")


class SnapshotOut(BaseModel):
    id: str
    sha256: str
    source: str
    format: str
    images: int
    annotations: int
    categories: list[str]
    created_at: str
    path: str = Field(description="its folder, relative to the artifact root")


class SnapshotPull(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str = Field(max_length=64, description="cvat-coco, cvat-mask, cvat-images or label-studio")
    source: str = Field(max_length=1024, description="the export archive in a data root; for label-studio the "
                                                     "project id")
    model: str | None = Field(None, max_length=300, description="label-studio: NAME@production (or @N) whose "
                                                                "classes the labels map to")


class VersionConfigOut(BaseModel):
    name: str
    version: int
    task: str
    config: str = Field(description="the resolved training config, YAML")


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Annotated[int | None, BeforeValidator(_json_integer)] = Field(None, ge=1, le=MAX_INT32,
                           description="default: the newest earlier version that was production")
    reason: str | None = Field(None, max_length=1000, description="why, in a few words: kept with the decision")


class RetrainOut(BaseModel):
    job_id: str
    created: bool = Field(description="false: a retraining of this model was already queued or running (this one)")
    state: str


class SignalledModel(BaseModel):
    name: str
    signalled_at: datetime = Field(description="the first signal since the model's last check")
    check_after: datetime = Field(description="the first tick from then on checks the dataset")


class DatasetChangedOut(BaseModel):
    dataset: str
    debounce_seconds: float
    models: list[SignalledModel]


# -- from store rows ------------------------------------------------------------------------------


_JOB_FIELDS = tuple(name for name in JobOut.model_fields if name != "progress")


def job_out(job: Job) -> JobOut:
    values = {name: getattr(job, name) for name in _JOB_FIELDS}
    return JobOut(progress=Progress.model_validate(job.progress or {}), **values)


def job_detail(job: Job, *, with_traceback: bool) -> JobDetail:
    base = job_out(job).model_dump()
    return JobDetail(**base, config=job.config, traceback=job.traceback if with_traceback else None)


def version_out(row: ModelVersion) -> ModelVersionOut:
    # load_report / exports are files beside the checkpoint, not columns: the route adds them
    return ModelVersionOut.model_validate(
        {name: getattr(row, name) for name in ModelVersionOut.model_fields if hasattr(row, name)}
    )


def decision_out(row: PromotionDecision) -> DecisionOut:
    return DecisionOut.model_validate({name: getattr(row, name) for name in DecisionOut.model_fields})
