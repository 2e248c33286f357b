"""Submit-time checks: build what the worker will build from a job, short of training or predicting.

A job that will fail on its config must be refused when it is submitted (HTTP 422 / 403), not
minutes later on a worker. `preflight` takes the spec *as it will be stored* (dumped and read back,
the way the worker reads it), checks that it parses back to the same kind of spec (a storage bug
cannot hide), and runs the kind's own check: the ``preflight`` its entry in `segpipe.job_kinds` names
(`check_train`, `check_evaluate`, `check_predict` below for the built-in kinds), inside the job's path
confinement. Those checks are built from the helpers here, which build what needs no data loading or
model weights:

- `check_train_config`: a ``data`` section; the model's name, task and own parameters (the model
  catalogue's checks, `segpipe.model_catalogue`: no network built, no torch); every data path exists;
  weights files exist;
- `check_model_ref`: a model reference names a training job / model version / checkpoint that exists;
- `check_data`: data folders and files exist;
- `check_predict_images`: a predict job's image list is read under the job's confinement (absolute,
  ``..`` and symlinked-out file names refused here, and again on the worker).

What it cannot know: files that change after submit, data content (the worker's dataset validation
reports that per image and annotation), and a referenced training job that later fails.

Nothing here imports torch, torchvision, smp or albumentations (which imports torch): the API runs these
checks. What needs them, building a custom ``augment.pipeline`` and the model registry's own check, runs
first thing on the worker (`segpipe.jobs.build_checks`), failing the job with the same message naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segpipe import job_kinds
from segpipe.config import DataConfig, JobConfig, ModelConfig, SourceConfig
from segpipe.errors import ConfigError, NotFoundError
from segpipe.jobs.kinds import preflight_check
from segpipe.jobs.model_refs import resolve_version
from segpipe.jobs.specs import EvaluateSpec, PredictSpec, Spec, dump_spec, load_spec, version_ref
from segpipe.paths import confined_to
from segpipe.settings import Settings
from segpipe.stores import Stores
from segpipe.stores.artifacts import ArtifactPathError


def preflight(kind: str, spec: Spec, stores: Stores, settings: Settings) -> Spec:
    """The stored form of `spec`, read back as the worker will; raises ConfigError (or PathNotAllowed)
    naming the key when the job could not run."""
    stored = load_spec(kind, dump_spec(spec), source=f"{kind} job (as stored)")
    check = preflight_check(kind)
    if check is not None:
        with confined_to(settings.roots):
            check(stored, stores)
    return stored


def check_train(config: JobConfig, _stores: Stores) -> None:
    """The ``train`` kind's check."""
    check_train_config(config)


def check_evaluate(spec: EvaluateSpec, stores: Stores) -> None:
    """The ``evaluate`` kind's check: its model exists, its data paths exist."""
    check_model_ref(spec.model, stores)
    check_data(spec.data, "data")


def check_predict(spec: PredictSpec, stores: Stores) -> None:
    """The ``predict`` kind's check: its model exists, its image list reads under the confinement."""
    check_model_ref(spec.model, stores)
    check_predict_images(spec)


def check_train_config(config: JobConfig) -> None:
    """A training config builds: data present, model section, training transform, data paths."""
    if config.data is None:
        raise ConfigError("data: required key is missing (a training job needs data.train)")
    check_model_config(config.model, config.task)
    check_data(config.data, "data")


def check_model_config(cfg: ModelConfig, task: str) -> None:
    """The catalogue's checks of a model section (name, task, own parameters) and its weight files."""
    from segpipe.model_catalogue import check_model_section

    check_model_section(cfg, task)
    from segpipe.pretrained import is_named, lookup

    for field in ("weights", "backbone_weights"):
        path = getattr(cfg, field)
        if path is not None and is_named(path):
            lookup(path, model=cfg.name, role=field)  # a name in the catalogue; fetched when the job builds
        elif path is not None and not Path(path).is_file():
            raise ConfigError(f"model.{field}: {path}: no such file")


def check_data(data: DataConfig, where: str) -> None:
    """The train and val sources of `data` (at key `where`) name folders and files that exist."""
    for split in ("train", "val"):
        source = getattr(data, split)
        if source is not None:
            _check_source(source, f"{where}.{split}")


def _check_source(source: SourceConfig, where: str) -> None:
    paths = source.paths()
    for key in source.layout_entry().paths:  # each a folder or a file (`segpipe.layouts`)
        if not _exists(paths[key.name], folder=key.folder):
            raise ConfigError(f"{where}.{key.name}: {paths[key.name]}: no such {'folder' if key.folder else 'file'}")


def _exists(path: Any, *, folder: bool) -> bool:  # a Path or a Uri
    """A local folder / file, or an object-store prefix with objects / an object (`segpipe.storage`)."""
    from segpipe.storage.uri import Uri, is_uri

    if not is_uri(path):
        return Path(path).is_dir() if folder else Path(path).is_file()
    from segpipe.storage import remote

    uri = Uri(path)
    return bool(remote.files_under(uri)) if folder else remote.exists(uri) and not remote.filesystem(uri).isdir(uri.key)


def check_model_ref(ref: str, stores: Stores) -> None:
    """The model a reference names exists now: a training job, a model version or a checkpoint."""
    if ref.startswith("job:"):
        job_id = ref.removeprefix("job:")
        try:
            stores.artifacts.job_dir(job_id)  # refuses ids that are not plain names (job:../../x)
        except ArtifactPathError as e:
            raise ConfigError(f"model {ref}: {e}") from None
        try:
            job = stores.jobs.get(job_id)
        except NotFoundError:
            raise ConfigError(f"model {ref}: no job {job_id}") from None
        if not job_kinds.has(job.kind, job_kinds.MODEL):
            raise ConfigError(f"model {ref}: job {job_id} is a {job.kind} job, not a training job")
        if job.state in ("failed", "cancelled"):
            raise ConfigError(f"model {ref}: job {job_id} {job.state}; it has no model to use")
        return
    if version_ref(ref) is not None:
        resolve_version(ref, stores)
        return
    from segpipe.run_files import resolve_checkpoint

    resolve_checkpoint(ref)


def check_predict_images(spec: PredictSpec) -> None:
    """The images of a predict job exist; a local list is read now, as the worker will read it."""
    from segpipe.data.image_list import image_items
    from segpipe.storage.uri import is_uri

    if is_uri(spec.images) or is_uri(spec.annotations):  # listed by the worker that splits the job
        if not _exists(spec.images, folder=True):
            raise ConfigError(f"images: {spec.images}: no such folder")
        if spec.annotations is not None and not _exists(spec.annotations, folder=False):
            raise ConfigError(f"annotations: {spec.annotations}: no such file")
        return
    image_items(spec.images, spec.annotations)

