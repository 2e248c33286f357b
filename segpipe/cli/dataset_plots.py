"""``segpipe validate --plots DIR``: the dataset summary picture, from a job config or dataset paths."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from segpipe.errors import ConfigError, DataError

if TYPE_CHECKING:
    from segpipe.config import JobConfig
    from segpipe.data.validate import Report

SUMMARY = "dataset_summary.png"


def _config_from_paths(paths: dict[str, Path], task: str | None, classes: str | None) -> JobConfig:
    from segpipe.config import from_dict
    from segpipe.layouts import layout_for

    source = {k: str(v) for k, v in paths.items() if v is not None}
    layout = layout_for(source, what="a dataset is")
    task = task or layout.default_task
    if task is None:
        raise ConfigError(f"{layout.title} data needs a task: {' or '.join(layout.tasks)}")
    data: dict[str, Any] = {"train": source}
    if classes:
        data["classes"] = [c.strip() for c in classes.split(",") if c.strip()]
    # the model section is required by the schema but never built here
    return from_dict({"task": task, "data": data, "model": {"name": "summary-only"}})


def write_dataset_summary(out_dir: Path, reports: dict[str, Report], max_images: int, *, config: JobConfig | None,
                          images: Path | None = None, annotations: Path | None = None, masks: Path | None = None,
                          root: Path | None = None, task: str | None = None, classes: str | None = None,
                          paths: dict[str, Path] | None = None) -> Path:
    """Statistics of every split that has no dataset-wide error (its bad images left out), drawn to
    ``out_dir/dataset_summary.png``; returns the picture's path."""
    from segpipe.data.sources import build_source
    from segpipe.data.summary import dataset_stats, plot_dataset_summary

    given = {"images": images, "annotations": annotations, "masks": masks, "root": root, **(paths or {})}
    job = config or _config_from_paths({k: v for k, v in given.items() if v is not None}, task, classes)
    if job.data is None:
        raise ConfigError("the config has no 'data' section: nothing to summarise")
    splits = []
    for name, report in reports.items():
        split = "train" if name == "dataset" else name
        source_cfg = getattr(job.data, split, None)
        if source_cfg is None or report.dataset_errors:
            continue
        try:
            source = build_source(source_cfg, job.data, job.task, exclude_images=report.bad_image_ids(),
                                  exclude_annotations=report.bad_annotation_ids())
            splits.append(dataset_stats(source, name, limit=max_images))
        except DataError as e:  # listed by the report already; a summary of the rest is still useful
            raise ConfigError(f"{name}: cannot summarise the dataset: {e}") from e
    if not splits:
        raise ConfigError("no split could be read for the dataset summary (see the errors above)")
    out_dir.mkdir(parents=True, exist_ok=True)
    return plot_dataset_summary(splits, out_dir / SUMMARY)
