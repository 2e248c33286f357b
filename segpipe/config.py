"""Job configs: YAML → validated, typed sections (pydantic), with `key.sub=value` overrides.

Every section forbids unknown keys, and the error names the key and lists the allowed ones. Relative
paths resolve against the folder of the config file. The resolved config (absolute paths, defaults
filled) is what gets saved beside every checkpoint and model version: `dump(config)`.

Configs are data, never code: nothing here imports or evaluates anything a config names.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from segpipe import layouts, safe_yaml
from segpipe.errors import ConfigError
from segpipe.masks.rows import DEFAULT_SCORE_FLOOR, DEFAULT_SCORE_THRESHOLD
from segpipe.storage.uri import Location, to_location
from segpipe.task_kinds import TaskKind
from segpipe.vocabulary import IGNORE_INDEX, Segmentation

PRESET_NAMES: tuple[str, ...] = ("none", "light", "default", "heavy")
# A model-version reference: NAME@production, NAME@latest, NAME@3 (resolved against the version store).
VERSION_REF = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)@(?P<which>production|latest|\d+)$")
# Marks a str field that names a model (a version, ``job:ID``, a run folder or checkpoint path), so that
# `resolve_paths` resolves it as a path only when it is one.
MODEL_REF = "model reference"
ModelRef = Annotated[str, MODEL_REF]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(Section):
    """Where one split's samples come from. Exactly one registered layout (`segpipe.layouts`):

    - COCO: ``{images: DIR, annotations: FILE.json}``
    - image + mask PNG folders: ``{images: DIR, masks: DIR}`` (mask of ``a.jpg`` is ``masks/a.png``)
    - class-per-folder: ``{root: DIR}`` (``root/<class name>/*.png``)

    Each may be a local path or an object-store URI (``s3://bucket/prefix``, `segpipe.storage`). A
    layout registered with path keys of its own gives them here too (`path`, `paths`).
    """

    images: Location | None = Field(None, description="folder of the images (COCO, or image + mask folders)")
    annotations: Location | None = Field(None, description="COCO instances JSON file")
    masks: Location | None = Field(None, description="folder of mask PNGs, one per image")
    root: Location | None = Field(None, description="class-per-folder images: root/<class name>/*")
    mask_suffix: str = Field(".png", description="mask file name = image stem + this suffix")
    # the path keys of registered layouts that are not fields above, by key (written back by `_flat`)
    _layout_paths: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _own_keys(cls, raw: Any, handler: ValidatorFunctionWrapHandler) -> SourceConfig:
        own: dict[str, Any] = {}
        if isinstance(raw, dict):
            theirs = [k for k in raw if k not in cls.model_fields and k in layouts.path_keys()]
            own = {k: to_location(raw[k]) for k in theirs if raw[k] is not None}
            raw = {k: v for k, v in raw.items() if k not in theirs}
        source = handler(raw)
        source._layout_paths.update(own)  # noqa: SLF001 - the model's own private state, set as it is built
        try:
            layouts.layout_for(source.paths())
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return source

    @model_serializer(mode="wrap")
    def _flat(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {**handler(self), **{k: str(v) for k, v in self._layout_paths.items()}}

    def path(self, key: str) -> Any:
        """The path or URI at `key` (a declared field or a registered layout's own key), or None."""
        if key in type(self).model_fields:
            return getattr(self, key)
        return self._layout_paths.get(key)

    def paths(self) -> dict[str, Any]:
        """Every path or URI this source gives, by key, in its layout's order when it has one."""
        given = {k: self.path(k) for k in layouts.path_keys() if self.path(k) is not None}
        try:
            order = [p.name for p in layouts.layout_for(given).paths]
        except ConfigError:
            return given
        return {k: given[k] for k in order}

    def set_path(self, key: str, value: Any) -> None:
        """Replace the path at `key` (resolution and confinement write back through this)."""
        if key in type(self).model_fields:
            setattr(self, key, value)
        else:
            self._layout_paths[key] = value

    @property
    def layout(self) -> str:
        """The registered layout's name: ``coco``, ``mask_folders``, ``class_folders``, …"""
        return layouts.layout_for(self.paths()).name

    def layout_entry(self) -> layouts.Layout:
        return layouts.layout_for(self.paths())


class DataConfig(Section):
    train: SourceConfig = Field(description="the training split")
    val: SourceConfig | None = Field(None, description="the validation split (metrics, best checkpoint, early stop)")
    categories: list[str | int] | None = Field(
        None,
        description="COCO categories (names or ids) to use; for task 'binary' the foreground ones. "
        "None = all.",
    )
    classes: list[str] | None = Field(
        None, description="class names of mask folders, index = pixel value (0 = background)"
    )

    @field_validator("classes")
    @classmethod
    def _class_names_fit(cls, v: list[str] | None) -> list[str] | None:
        from segpipe.limits import LimitExceeded, check_text

        for i, name in enumerate(v or []):
            try:
                check_text(f"[{i}]", name, "class name")
            except LimitExceeded as e:
                raise ValueError(str(e)) from None
        return v
    foreground_value: int | None = Field(
        None, description="binary mask PNGs: pixel value that is foreground; None = any non-zero"
    )
    classification_source: Literal["crops", "image"] = Field(
        "crops",
        description="classification from COCO: each annotation's box crop, or image-level labels",
    )
    crop_padding: float = Field(0.1, ge=0, le=1, description="context around box crops, fraction of size")
    ignore_index: int = Field(IGNORE_INDEX, ge=0, le=255, description="label-map value that no loss or metric counts")
    skip_invalid: bool = Field(
        False, description="skip images/annotations the dataset check finds invalid (listed in validation.json) "
        "instead of refusing to train")
    num_workers: int = Field(2, ge=0, description="data-loader worker processes")


class AugmentConfig(Section):
    preset: Literal["none", "light", "default", "heavy"] = Field(
        "default", description="a named albumentations preset (heavy adds elastic warps for segmentation)")
    pipeline: dict[str, Any] | None = Field(
        None, description="a full albumentations pipeline in A.to_dict / A.from_dict format"
    )

    @model_validator(mode="after")
    def _preset_or_pipeline(self) -> AugmentConfig:
        if self.pipeline is not None and "preset" in self.model_fields_set:
            raise ValueError("give either 'preset' or 'pipeline', not both")
        return self

    @model_serializer(mode="wrap")
    def _without_unused_preset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A pipeline replaces the preset: writing the default preset beside it would make every stored
        # copy (job rows, checkpoints, nested retrain specs) fail the check above when it is read back.
        data = handler(self)
        if self.pipeline is not None:
            data.pop("preset", None)
        return data


class ModelConfig(BaseModel):
    """`name` picks a registered model; further keys are that model's own parameters (checked by the
    model registry, which lists the allowed ones)."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="a registered model (`segpipe models --architectures`)")
    weights: Annotated[str | None, MODEL_REF] = Field(
        None,
        description="whole-model weights to start from: a safetensors or torch file, a segpipe run "
        "directory or checkpoint, a model version NAME@production / NAME@latest / NAME@3, or pretrained "
        "weights by name: torchvision:MaskRCNN_ResNet50_FPN_Weights.COCO_V1, torchvision:DEFAULT",
    )
    backbone_weights: Annotated[str | None, MODEL_REF] = Field(
        None,
        description="backbone/encoder weights only: a safetensors or torch file, or by name: "
        "torchvision:ResNet50_Weights.IMAGENET1K_V2, smp:resnet34/imagenet",
    )
    in_channels: int = Field(3, ge=1, description="input channels (1 for grayscale)")
    strict: bool = Field(
        False,
        description="weights must fit exactly (no re-initialised class-dependent layers); else the heads "
        "whose size depends on the class count are re-initialised when it differs",
    )
    trainable_backbone_layers: int | None = Field(
        None, ge=0, description="backbone stages that train, counted from the top; None: the family's default"
    )
    freeze_batchnorm: bool | None = Field(
        None, description="batch norm of the backbone frozen (statistics and affine); None: when pretrained"
    )

    @field_validator("weights", "backbone_weights", mode="before")
    @classmethod
    def _weights_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, Path) else value

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrainConfig(Section):
    epochs: int = Field(10, ge=1, description="passes over the training data")
    batch_size: int = Field(4, ge=1, description="images per step")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    image_size: int = Field(512, ge=8, description="training size in pixels (letterboxed for segmentation)")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$", description="auto: CUDA when present")
    seed: int = Field(0, description="seeds every random number generator")
    optimizer: Literal["sgd", "adamw"] = Field("adamw", description="the optimizer")
    weight_decay: float = Field(1e-4, ge=0, description="L2 penalty (decoupled for adamw)")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd momentum")
    scheduler: Literal["none", "cosine", "step", "onecycle"] = Field("cosine", description="learning-rate schedule")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up steps before the schedule")
    step_size: int = Field(10, ge=1, description="epochs between decays, scheduler 'step'")
    gamma: float = Field(0.1, gt=0, le=1, description="decay factor, scheduler 'step'")
    grad_clip: float | None = Field(None, gt=0, description="clip the gradient norm to this; None: no clipping")
    backbone_lr_mult: float = Field(
        1.0, gt=0, le=1, description="learning rate of the backbone (pretrained part) = lr × this"
    )
    accumulate: int = Field(1, ge=1, description="gradient accumulation steps")
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto", description="mixed precision on CUDA (auto: bf16 where supported, else fp16 with a scaler); off on a CPU")
    monitor: str | None = Field(None, description="metric for the best checkpoint; None = the task's")
    monitor_mode: Literal["max", "min"] = Field("max", description="max: higher monitor is better")
    early_stop_patience: int | None = Field(
        None, ge=1, description="stop after this many epochs without a better monitor; None: never")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cut each epoch short (smoke runs)")
    epoch_repeats: int = Field(
        1, ge=1, le=1000, description="each training image appears this many times per epoch, each with its own "
        "augmentation (small datasets trained on random crops: fewer validations and checkpoints)"
    )
    deterministic: bool = Field(False, description="torch deterministic algorithms (slower)")
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads; None: OMP_NUM_THREADS if set, else the cores available"
    )
    lr_scaling: Literal["none", "linear", "sqrt"] = Field(
        "none", description="with several ranks (resources): lr × world size (linear) or × its square root (sqrt); "
        "batch_size is per rank, so the effective batch is batch_size × accumulate × gpus_per_node × nodes"
    )
    sync_batchnorm: bool = Field(
        False, description="with several ranks: BatchNorm statistics over the global batch (SyncBatchNorm; CUDA only)"
    )


class PredictConfig(Section):
    images: Path | None = Field(None, description="images to predict (segpipe predict)")
    score_threshold: float = Field(DEFAULT_SCORE_THRESHOLD, ge=0, le=1, description="the default view: "
                                   "instances below it are left out of exports and overlays (not out of the store)")
    score_floor: float = Field(DEFAULT_SCORE_FLOOR, ge=0, le=1, description="instances and boxes scoring at least "
                               "this much are stored, so a lower --score-threshold at export gives more")
    formats: list[str] | None = Field(None, description="prediction format names (segpipe.masks.formats); "
                                      "None: the task's defaults (coco-results, plus coco and png where they fit)")
    image_url_prefix: str = Field("/data/local-files/?d=", max_length=2000,
                                  description="label-studio: data.image = this prefix + the image's file name")
    segmentation: Segmentation = Field("rle", description="masks in coco / label-studio")
    topk: int = Field(5, ge=1, description="classification: classes kept per image")
    tile_size: int | None = Field(None, ge=16, description="sliding-window tile (semantic/binary)")
    tile_overlap: float = Field(0.25, ge=0, lt=1, description="overlap of neighbouring tiles, fraction of tile_size")
    tile_border: Literal["zero", "mirror"] = Field(
        "zero", description="tiles: pad the image with zeros, or extend it by mirroring (overlap-tile strategy)"
    )
    tta: bool = Field(False, description="segmentation: average the logits of the 8 flips/rotations")
    evaluate_tiled: bool = Field(
        False,
        description="segmentation: validation and evaluation at native resolution with tile_size windows "
        "(tile_overlap, tile_border) instead of at the letterboxed training size",
    )
    batch_size: int = Field(4, ge=1, description="images per forward pass")
    shard_size: int = Field(
        250, ge=1, description="queued predict jobs with more images are split into shards of this many, one queue message each"
    )

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, formats: list[str] | None) -> list[str] | None:
        if formats is None:
            return None
        from segpipe.masks.formats import check_formats  # the registry is the one vocabulary

        try:
            return check_formats(formats, None)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class ResourcesConfig(Section):
    """What a queued training asks of the cluster (`segpipe.jobs.elastic`): ``gpus_per_node`` ranks on each of
    ``nodes`` hosts, launched by PyTorch's elastic agent (torch.distributed.run)."""

    gpus_per_node: int = Field(1, ge=1, le=64, description="ranks per host (one per GPU; CPU processes on gloo without one)")
    nodes: int = Field(1, ge=1, le=64, description="hosts; each is one `segpipe worker` that claims one node of the job")
    join_timeout: float = Field(
        300.0, gt=0, le=86400, description="seconds every node has to be claimed and to join the rendezvous; "
        "else the job fails and releases the nodes it holds"
    )
    max_restarts: int = Field(3, ge=0, le=100, description="times the elastic agent restarts the ranks (from the last "
                              "checkpoint) after a rank or a node died, before the job fails")

    @property
    def world_size(self) -> int:
        return self.gpus_per_node * self.nodes


class JobConfig(Section):
    name: str | None = Field(None, description="model name: a successful job registers version NAME@N")
    task: TaskKind = Field(description="the ML problem")
    data: DataConfig | None = Field(None, description="where the samples come from")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="paired augmentation")
    model: ModelConfig = Field(description="the model and its starting weights")
    train: TrainConfig = Field(default_factory=TrainConfig, description="the training loop")
    predict: PredictConfig = Field(default_factory=PredictConfig, description="prediction and its exports")
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig,
                                       description="ranks per host and hosts for a queued training")
    output_dir: Path = Field(Path("runs/exp"), description="the run directory (local runs; queued jobs use the artifact root)")

    @field_validator("name")
    @classmethod
    def _name_fits(cls, v: str | None) -> str | None:
        from segpipe.limits import LimitExceeded, check_text

        try:
            return None if v is None else check_text("", v, "model name")
        except LimitExceeded as e:
            raise ValueError(str(e)) from None

    @model_validator(mode="after")
    def _task_fits_layout(self) -> JobConfig:
        if self.data is None:
            return self
        for split, src in (("train", self.data.train), ("val", self.data.val)):
            if src is not None:
                try:
                    src.layout_entry().check_task(self.task, f"data.{split}: ")
                except ConfigError as e:
                    raise ValueError(str(e)) from None
        return self


# ---------------------------------------------------------------------------------------------- loading


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> JobConfig:
    """Read a YAML job config, apply ``key.sub=value`` overrides, validate, resolve relative paths."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror or e})") from None
    raw = parse_yaml(text, source=str(path), aliases=True)  # a person's own file: aliases allowed, bounded
    return from_dict(raw, base_dir=path.parent, overrides=overrides, source=str(path))


def parse_yaml(text: str, source: str = "<config>", *, aliases: bool = False) -> dict[str, Any]:
    """A YAML mapping, parsed by `segpipe.safe_yaml.load`: bounded depth and size; aliases refused unless
    `aliases` (trusted files: a local config, the schedule, text segpipe stored itself)."""
    raw = safe_yaml.load(text, source=source, aliases=aliases)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a job config is a mapping of sections, got {type(raw).__name__}")
    return raw


def from_dict(
    raw: dict[str, Any],
    base_dir: Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    source: str = "<config>",
) -> JobConfig:
    """Validate a config mapping. `base_dir` resolves relative paths (None: leave them as given)."""
    raw = apply_overrides(raw, overrides)
    try:
        config = JobConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source}: " + "; ".join(explain_error(err) for err in e.errors())) from None
    if base_dir is not None:
        resolve_paths(config, Path(base_dir).resolve())
    return config


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``train.epochs=3`` sets raw['train']['epochs'] = 3; values are parsed as YAML scalars/lists."""
    import copy

    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        parts = key.strip().split(".")
        node = raw
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {item!r}: {'.'.join(parts[: depth + 1])} is a value, not a section"
                )
            node = child
        try:
            node[parts[-1]] = safe_yaml.load(value, source=f"override {item!r}") if value.strip() else None
        except safe_yaml.DocumentTooLarge:
            raise
        except ConfigError:
            node[parts[-1]] = value
    return raw


def dump(config: JobConfig) -> str:
    """The resolved config as YAML (saved next to checkpoints and model versions)."""
    data = config.model_dump(mode="json")
    return safe_yaml.dump(data)


def resolve_paths(model: BaseModel, base: Path) -> None:
    """Resolve, in place, every path that `model` (a job config, a job spec, any section) names, by
    `resolve_location`: the one rule for configs, specs and the schedule, from a file or the CLI.

    Paths are fields typed `Path` / `Location` (alone or in a list), a data source's path keys, and
    model references (`ModelRef` fields, ``model.weights``, ``model.backbone_weights``)."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            resolve_paths(value, base)
        elif MODEL_REF in info.metadata and isinstance(value, str):
            setattr(model, name, resolve_model_ref(value, base))
        elif isinstance(value, Path):
            setattr(model, name, resolve_location(value, base))
        elif isinstance(value, list) and value and all(isinstance(v, Path) for v in value):
            setattr(model, name, [resolve_location(v, base) for v in value])
    if isinstance(model, SourceConfig):
        for key, value in model.paths().items():
            model.set_path(key, resolve_location(value, base))


def resolve_location(value: Any, base: Path) -> Any:
    """A path written in a file whose folder is `base`: an object-store URI (``s3://…``) and an absolute
    path stay as written; a relative path is taken from `base`. Text stays text."""
    from segpipe.storage.uri import is_uri

    if value is None or is_uri(value) or Path(value).is_absolute():
        return value
    if isinstance(value, str) and value.lower().startswith("file://"):
        return value  # `to_location` makes it a path; it names an absolute one
    resolved = (base / value).resolve()
    return str(resolved) if isinstance(value, str) else resolved


def resolve_model_ref(ref: str, base: Path) -> str:
    """A model or weights reference: version refs, ``job:ID``, named weights and URIs stay; a relative
    path is taken from `base`."""
    if is_model_ref(ref) or is_named_weights(ref):
        return ref
    return str(resolve_location(ref, base))


def is_version_ref(ref: str | Path) -> bool:
    """``NAME@production|latest|N`` (a model version), as opposed to a path."""
    return isinstance(ref, str) and VERSION_REF.match(ref) is not None


def is_named_weights(ref: str | Path) -> bool:
    """Pretrained weights by name (``torchvision:…``, ``smp:…``; `segpipe.pretrained`), not a path."""
    from segpipe.pretrained.sources import is_named

    return is_named(ref)


def is_model_ref(ref: str | Path) -> bool:
    """A model version or ``job:<training job id>``: resolved against the stores, not a path."""
    return is_version_ref(ref) or (isinstance(ref, str) and ref.startswith("job:"))


# --------------------------------------------------------------------------------------- error messages


def explain_error(err: Any, root: type[BaseModel] | None = None) -> str:
    """One pydantic error as 'dotted.key: what is wrong'; unknown keys list the allowed ones."""
    loc = tuple(err["loc"])
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        owner = _model_at(loc[:-1], root or JobConfig)
        allowed = ", ".join(owner.model_fields) if owner else "?"
        return f"{dotted}: unknown key; allowed: {allowed}"
    if err["type"] == "missing":
        return f"{dotted}: required key is missing"
    if err["type"] == "value_error":
        return f"{dotted}: {err['msg'].removeprefix('Value error, ')}"
    return f"{dotted}: {err['msg']} (got {err.get('input')!r})"


def _model_at(loc: tuple[Any, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The pydantic model class that owns the location `loc` inside `root` (for listing keys)."""
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            if model is not None and not isinstance(part, str):
                continue  # list index / union branch tag: stay on the same model
            return None
        model = _first_model(model.model_fields[part].annotation)
    return model


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _first_model(arg)
            if found is not None:
                return found
    return None
