"""A predict job's stored predictions → the export layer (`segpipe.masks.formats`).

The bridge between the store and the (store-free) writers: it reads the job's images from the store
(`PredictionStore.iter_job_images`, empty images included), names each one after its file in the
job's image folder, and builds the `ExportContext` from the job's model (task, every category,
model version). Used by predict jobs at their end, ``segpipe masks JOB``, ``GET /jobs/{id}/export`` and
``GET /jobs/{id}/label-next?format=…`` (``keys``: a ranking's images, in its order).

The task and categories come from the small files the model's training run wrote beside its checkpoint
(``categories.json``; the task from the version row or ``config.yaml``), so an export needs no torch;
a model from before those files existed is read from its checkpoint (torch), unless the caller forbids it.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segpipe import job_kinds
from segpipe.config import parse_yaml
from segpipe.data.categories import CategoryMap
from segpipe.data.image_list import ImageItem, image_items
from segpipe.errors import ConfigError, SegpipeError
from segpipe.jobs.model_refs import resolve_model_ref, resolve_version
from segpipe.jobs.specs import PredictSpec, load_spec, version_ref
from segpipe.masks.formats import ExportContext, check_formats, default_formats, export
from segpipe.masks.rows import DEFAULT_SCORE_THRESHOLD, ExportImage, categories_of
from segpipe.run_files import read_categories, resolve_checkpoint, version_categories_file
from segpipe.storage.uri import is_uri
from segpipe.stores import Job, Stores
from segpipe.vocabulary import RunFiles


@dataclass(frozen=True)
class JobExportSource:
    """What a predict job's exports need: its task and categories, and where its images are."""

    job_id: str
    task: str
    categories: list[tuple[int, str]]
    model_version: str
    files: Mapping[str, tuple[str, Path | None]]  # image key → (file name relative to the image folder, path)

    def context(self, **options: Any) -> ExportContext:
        options.setdefault("score_threshold", DEFAULT_SCORE_THRESHOLD)
        options = {k: v for k, v in options.items() if v is not None}
        try:
            return ExportContext(task=self.task, categories=self.categories, model_version=self.model_version, **options)
        except ConfigError as exc:  # e.g. an unknown category id: say which job
            raise ConfigError(f"job {self.job_id}: {exc}") from None


def job_source(stores: Stores, job_id: str, *, files: Mapping[str, tuple[str, Path | None]] | None = None,
               checkpoint_fallback: bool = True) -> JobExportSource:
    """`ConfigError` when the job is not a predict job or its model's categories cannot be read.

    ``files``: image key → (file name, path or None) when the caller already resolved the images it
    exports (otherwise the job's image folder is listed). ``checkpoint_fallback=False``: never load the checkpoint
    (no torch; the API's routes): a model without ``categories.json`` is then a `ConfigError`."""
    job = stores.jobs.get(job_id)
    if not job_kinds.has(job.kind, job_kinds.PREDICTIONS):
        raise ConfigError(f"job {job_id} is a {job.kind} job; exports come from predict jobs")
    spec = load_spec(job.kind, job.config)
    if not isinstance(spec, PredictSpec):
        raise ConfigError(f"job {job_id}: its config is not a predict job document")
    version = str((job.progress or {}).get("model") or spec.model)
    found = run_categories(stores, job, spec.model)
    if found is None and not checkpoint_fallback:
        raise ConfigError(f"job {job_id}: the task and classes of its model {spec.model!r} cannot be read without "
                          "loading it (no categories.json beside its checkpoint, or nothing naming its task: "
                          "a model trained before segpipe wrote them); export it with `segpipe masks`")
    task, categories = found if found is not None else _checkpoint_categories(stores, job_id, spec.model)
    return JobExportSource(job_id, task, categories, version, _image_files(spec) if files is None else files)


def run_categories(stores: Stores, job: Job, ref: str) -> tuple[str, list[tuple[int, str]]] | None:
    """The task and (id, name) categories of the model ``ref`` that predict ``job`` names, from its run's
    small files; None when one is missing. A version reference means the version the job ran with."""

    task: str | None = None
    parsed = version_ref(ref)
    try:
        if ref.startswith("job:"):
            train_id = ref.removeprefix("job:")
            categories, config = (stores.artifacts.fetch(train_id, f"run/{name}")
                                  for name in (RunFiles.CATEGORIES, RunFiles.CONFIG))
        elif parsed is not None:
            row = (stores.versions.get(parsed[0], job.model_version) if job.model_version
                   else resolve_version(ref, stores))
            if row is None or not row.checkpoint:
                return None
            task, config = row.task, None
            categories = version_categories_file(stores, row.checkpoint)
        else:
            path = Path(ref)
            folder = path if path.is_dir() else path.parent
            categories, config = folder / RunFiles.CATEGORIES, folder / RunFiles.CONFIG
        if task is None and config is not None and config.is_file():
            task = parse_yaml(config.read_text(encoding="utf-8"), aliases=True).get("task")
        if not isinstance(task, str) or not categories.is_file():
            return None
        return task, read_categories(categories)
    except (SegpipeError, OSError, ValueError):  # not there, not readable, or a version no longer known
        return None


def _checkpoint_categories(stores: Stores, job_id: str, ref: str) -> tuple[str, list[tuple[int, str]]]:
    # torch: only for a model from before runs wrote categories.json (the API never gets here)
    from segpipe.engine.checkpoint import load_checkpoint

    try:
        # only the task and the category map are read: the weights stay on disk (a parent finishing
        # its shards spent a third of a second loading them, bench/scale_out.py)
        checkpoint = load_checkpoint(resolve_checkpoint(resolve_model_ref(ref, stores)), mmap=True)
    except Exception as exc:  # say which job and model, whatever went wrong
        raise ConfigError(f"job {job_id}: cannot read its model {ref!r} to export: {exc}") from exc
    task = checkpoint.get("task")
    if task is None:
        raise ConfigError(f"job {job_id}: its model {ref!r} does not record its task (not written by segpipe train)")
    return str(task), categories_of(CategoryMap.from_dict(checkpoint["category_map"]))


def predict_formats(spec: PredictSpec, task: str) -> list[str]:
    """The formats a predict job exports: those it asked for (or its task's defaults), and always its
    COCO results (the record ``GET /jobs/{id}/results`` and COCOeval read), first."""
    return list(dict.fromkeys(["coco-results", *(spec.predict.formats or default_formats(task))]))


def listed_files(images: str | Path, items: Sequence[tuple[str, int | str, str]],
                 local: Sequence[ImageItem] = ()) -> dict[str, tuple[str, Path | None]]:
    """`JobExportSource.files` from a sharded job's image lists (``(name relative to the images root,
    image id, output name)``) instead of listing the image folder again: key → (that name, the file on
    this disk: ``local``'s path, else under a local root, else None)."""
    paths = {str(it.image_id): it.path for it in local}
    root = None if is_uri(images) else Path(images)
    files: dict[str, tuple[str, Path | None]] = {}
    for rel, image_id, _name in items:
        if Path(rel).is_absolute():  # a symlink resolved out of the root: no name inside it, named after its key
            continue
        key = str(image_id)
        files[key] = (rel, paths.get(key) or (root / rel if root is not None else None))
    return files


def _image_files(spec: PredictSpec) -> dict[str, tuple[str, Path | None]]:
    files: dict[str, tuple[str, Path | None]] = {}
    try:
        root = Path(spec.images)
        for item in image_items(root, spec.annotations):
            files[str(item.image_id)] = (item.path.relative_to(root).as_posix(), item.path)
    except (ConfigError, ValueError, OSError):
        pass  # the image folder is gone: files are then named after the image keys
    return files


def job_images(stores: Stores, source: JobExportSource, keys: Sequence[str] | None = None,
               task_data: Mapping[str, dict[str, Any]] | None = None) -> Generator[ExportImage, None, None]:
    """The job's images, in key order, each with its rows (possibly none); with ``keys``, those images in
    that order (keys the job has not stored are left out); ``task_data``: image key → its
    `ExportImage.task_data`."""
    from segpipe.data.images import read_image  # cv2: only when an export draws or copies the images

    stored = (stores.predictions.iter_job_images(source.job_id) if keys is None
              else stores.predictions.images_in_order(source.job_id, keys))
    for key, stored_height, stored_width, rows in stored:
        file_name, path = source.files.get(key, (key, None))
        height, width = stored_height, stored_width
        if height is None or width is None:  # markers written before sizes were recorded
            height, width = (rows[0].height, rows[0].width) if rows else (0, 0)
        load = (lambda p=path: read_image(p)) if path is not None and path.is_file() else None
        yield ExportImage(key, file_name, int(height), int(width), rows, load, path,
                          dict((task_data or {}).get(key, {})))


def export_job(stores: Stores, job_id: str, out_dir: str | Path, formats: Sequence[str], *,
               source: JobExportSource | None = None, keys: Sequence[str] | None = None,
               task_data: Mapping[str, dict[str, Any]] | None = None, **options: Any) -> dict[str, list[Path]]:
    """Export a predict job's stored predictions in ``formats`` under ``out_dir``; returns files per format.
    ``source``: the job's `job_source`, when the caller already read it; ``keys``: only these images, in
    this order (what to label next), instead of every image in key order; ``task_data``: per image key,
    fields the formats that keep per-image data add (`ExportImage.task_data`)."""
    source = source or job_source(stores, job_id)
    check_formats(formats, source.task)
    images = job_images(stores, source, keys, task_data)
    try:
        return export(images, formats, source.context(**options), Path(out_dir))
    finally:
        images.close()
