"""A predict job's stored predictions → the export layer (`segpipe.masks.formats`).

The bridge between the store and the (store-free) writers: it reads the job's images from the store
(`PredictionStore.iter_job_images`, empty images included), names each one after its file in the
job's image folder, and builds the `ExportContext` from the job's model (task, every category,
model version). Used by predict jobs at their end, ``segpipe masks JOB`` and ``GET /jobs/{id}/export``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segpipe.errors import ConfigError
from segpipe.masks.formats import ExportContext, check_formats, export
from segpipe.masks.rows import DEFAULT_SCORE_THRESHOLD, ExportImage, categories_of


@dataclass(frozen=True)
class JobExportSource:
    """What a predict job's exports need: its task and categories, and where its images are."""

    job_id: str
    task: str
    categories: list[tuple[int, str]]
    model_version: str
    files: dict[str, tuple[str, Path]]  # image key → (file name relative to the image folder, path)

    def context(self, **options: Any) -> ExportContext:
        options.setdefault("score_threshold", DEFAULT_SCORE_THRESHOLD)
        options = {k: v for k, v in options.items() if v is not None}
        try:
            return ExportContext(task=self.task, categories=self.categories, model_version=self.model_version, **options)
        except ConfigError as exc:  # e.g. an unknown category id: say which job
            raise ConfigError(f"job {self.job_id}: {exc}") from None


def job_source(stores: Any, job_id: str) -> JobExportSource:
    """`ConfigError` when the job is not a predict job or its model's checkpoint cannot be read."""
    from segpipe.data.categories import CategoryMap
    from segpipe.engine.checkpoint import load_checkpoint
    from segpipe.engine.predict import image_items, resolve_checkpoint
    from segpipe.jobspec import load_spec
    from segpipe.pipeline import resolve_model_ref

    job = stores.jobs.get(job_id)
    if job.kind != "predict":
        raise ConfigError(f"job {job_id} is a {job.kind} job; exports come from predict jobs")
    spec = load_spec(job.kind, job.config)
    try:
        # only the task and the category map are read: the weights stay on disk (a parent finishing
        # its shards spent a third of a second loading them, bench/scale_out.py)
        checkpoint = load_checkpoint(resolve_checkpoint(resolve_model_ref(spec.model, stores)), mmap=True)
    except Exception as exc:  # noqa: BLE001 - say which job and model, whatever went wrong
        raise ConfigError(f"job {job_id}: cannot read its model {spec.model!r} to export: {exc}") from exc
    cmap = CategoryMap.from_dict(checkpoint["category_map"])
    files: dict[str, tuple[str, Path]] = {}
    try:
        root = Path(spec.images)
        for item in image_items(root, spec.annotations):
            files[str(item.image_id)] = (item.path.relative_to(root).as_posix(), item.path)
    except (ConfigError, ValueError, OSError):
        pass  # the image folder is gone: files are then named after the image keys
    version = (job.progress or {}).get("model") or spec.model
    task = checkpoint.get("task")
    if task is None:
        raise ConfigError(f"job {job_id}: its model {spec.model!r} does not record its task (not written by segpipe train)")
    return JobExportSource(job_id, str(task), categories_of(cmap), str(version), files)


def job_images(stores: Any, source: JobExportSource) -> Iterator[ExportImage]:
    """The job's images, in key order, each with its rows (possibly none)."""
    from segpipe.data.images import read_image

    for key, height, width, rows in stores.predictions.iter_job_images(source.job_id):
        file_name, path = source.files.get(key, (key, None))
        if height is None or width is None:  # markers written before sizes were recorded
            height, width = (rows[0].height, rows[0].width) if rows else (0, 0)
        load = (lambda p=path: read_image(p)) if path is not None and path.is_file() else None
        yield ExportImage(key, file_name, int(height), int(width), rows, load, path)


def export_job(stores: Any, job_id: str, out_dir: str | Path, formats: Sequence[str], *,
               source: JobExportSource | None = None, **options: Any) -> dict[str, list[Path]]:
    """Export a predict job's stored predictions in ``formats`` under ``out_dir``; returns files per format.
    ``source``: the job's `job_source`, when the caller already read it."""
    source = source or job_source(stores, job_id)
    check_formats(formats, source.task)
    images = job_images(stores, source)
    try:
        return export(images, formats, source.context(**options), Path(out_dir))
    finally:
        images.close()
