"""The export registry: one writer class per format name, found by the CLI, predict jobs and the API.

A writer is created for one export (an output folder and an `ExportContext`), is given images one at
a time (`add`) so nothing is collected in memory that the format does not need, and is `close`\\ d
to finish its files (it returns their paths). Registering a writer with the task kinds it fits is
all a new format takes::

    @PREDICTION_FORMATS.register("my-format", description="…", tags=("instance", "semantic"))
    class MyWriter(FormatWriter): ...

A writer says whether its files are *per image* (``per_image``: the folders it writes each image's
files into, which need no other image) or *job-level* (files that need every image: a COCO file, a
zip, a task list). A sharded predict job lets each shard write its own images' per-image files and
leaves only the job-level ones to the parent (`per_image_formats`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from segpipe.errors import ConfigError, DataError
from segpipe.masks.duplicates import DEFAULT_DUPLICATE_IOU, suppress_duplicates
from segpipe.masks.rows import DEFAULT_SCORE_THRESHOLD, ExportImage, PredictionRow
from segpipe.paths import PathNotAllowed, output_path
from segpipe.registry import Registry
from segpipe.task_kinds import INSTANCE_TASKS, TASK_KINDS, traits
from segpipe.vocabulary import Segmentation

TASKS = TASK_KINDS


@dataclass(frozen=True)
class ExportContext:
    """What every writer may need besides the rows.

    - ``task``: the model's task kind; ``categories``: (original id, name) of every category it knows;
    - ``score_threshold``: instances scoring below it are left out (label-map regions score 1.0);
    - ``segmentation``: ``rle`` (exact), ``polygons`` (outer outlines) or ``both`` (Label Studio: brush and polygon);
    - ``image_url_prefix``: Label Studio's ``data.image`` is this prefix + the image's file name
      (e.g. ``/data/local-files/?d=batch1/`` or ``https://bucket.example/batch1/``);
    - ``model_version``: the model version that made the predictions (Label Studio shows it);
    - ``with_images``: ``coco`` copies the image files into ``images/``;
    - ``only_categories``: original ids of the categories to export (None: all); rows of any other
      category are left out by every format. Each id must be one of ``categories`` (`ConfigError` naming
      them otherwise); an empty set exports the images with no rows.
    - ``suppress_duplicates``: drop the lower-scoring of overlapping instances across classes
      (`segpipe.masks.duplicates`, at ``duplicate_iou``); None: each format's default, on for the
      formats annotators import as pre-labels (``label-studio``, ``cvat-mask``), off for the others.
    """

    task: str
    categories: Sequence[tuple[int, str]]
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    segmentation: Segmentation = "rle"
    image_url_prefix: str = "/data/local-files/?d="
    model_version: str = "segpipe"
    with_images: bool = False
    polygon_tolerance: float = 0.25
    only_categories: frozenset[int] | None = None
    suppress_duplicates: bool | None = None
    duplicate_iou: float = DEFAULT_DUPLICATE_IOU

    def __post_init__(self) -> None:
        if self.only_categories is None:
            return
        kept = frozenset(int(c) for c in self.only_categories)
        object.__setattr__(self, "only_categories", kept)
        unknown = sorted(kept - {cid for cid, _ in self.categories})
        if unknown:
            known = ", ".join(f"{cid} ({name})" for cid, name in self.categories) or "none"
            raise ConfigError(f"unknown category id(s) {', '.join(map(str, unknown))}; the categories are: {known}")

    def name_of(self, category_id: int | None) -> str:
        for cid, name in self.categories:
            if cid == category_id:
                return name
        return str(category_id)


class FormatWriter:
    """Base of every export writer; subclasses override `add` and usually `close`."""

    #: True when the format writes a single file that can be served as it is (not zipped)
    single_file: str | None = None
    #: True for pre-labels an annotator corrects: duplicates are suppressed unless the context says not
    annotator_facing: bool = False
    #: per-image formats: the folders (under the export folder) that hold each image's files, which
    #: depend on that image alone; empty for a job-level format (its files need every image)
    per_image: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def folders(cls, task: str) -> tuple[str, ...]:
        """The folders a per-image format writes for a job of ``task`` (every image gets files in each)."""
        return cls.per_image

    def __init__(self, out: Path, ctx: ExportContext) -> None:
        self.out = Path(out)
        self.ctx = ctx
        self.written: list[Path] = []
        self.out.mkdir(parents=True, exist_ok=True)

    def add(self, image: ExportImage) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> list[Path]:
        return self.written

    def abort(self) -> None:
        """Drop half-written whole-export files (per-image files already written stay)."""

    def path(self, *parts: str) -> Path:
        """``out/parts…``, its folder created; a name that would leave ``out`` (``..``, absolute, a symlink out)
        is refused: parts may come from the data (a COCO file_name)."""
        try:
            path = output_path(self.out, "/".join(parts), what=f"export file name {'/'.join(parts)!r}")
        except PathNotAllowed as exc:
            raise DataError(f"export file name {'/'.join(parts)!r} leaves the output folder ({exc})") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


PREDICTION_FORMATS: Registry[type[FormatWriter]] = Registry("prediction format")


def check_formats(names: Iterable[str], task: str | None) -> list[str]:
    """The formats asked for, deduplicated; `ConfigError` naming the known formats for an unknown one,
    and the tasks it fits for one that does not fit ``task`` (None: task unknown, not checked)."""
    checked = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not checked:
        raise ConfigError(f"no prediction format given; known: {', '.join(PREDICTION_FORMATS.names())}")
    for name in checked:
        entry = PREDICTION_FORMATS.entry(name)
        if task is not None and task not in entry.tags:
            fits = ", ".join(t for t in TASKS if t in entry.tags)
            raise ConfigError(f"prediction format {name!r} does not fit a {task} job (it fits: {fits})")
    return checked


def default_formats(task: str) -> list[str]:
    """What a predict job writes when its config names no formats: COCO results always, plus the COCO
    dataset and class-id PNGs where the task has them (csv for classification)."""
    return list(traits(task).default_formats)


def per_image_formats(names: Iterable[str]) -> list[str]:
    """Those of ``names`` whose files are per image (`FormatWriter.per_image`), in the order given."""
    return [n for n in names if PREDICTION_FORMATS.get(n).per_image]


def job_level_formats(names: Iterable[str]) -> list[str]:
    """Those of ``names`` whose files need every image of the job, in the order given."""
    return [n for n in names if not PREDICTION_FORMATS.get(n).per_image]


def formats_for(task: str) -> list[str]:
    """The format names that fit a task kind."""
    return PREDICTION_FORMATS.names(tag=task)


def kept_rows(image: ExportImage, ctx: ExportContext, annotator_facing: bool = False) -> list[PredictionRow]:
    """The rows a writer exports — the one place an export filters, so every format agrees: rows of a
    category outside ``ctx.only_categories`` left out (every task kind), and instances and boxes below the
    score threshold (a classification keeps its ranked classes, label-map regions score 1.0); then, when
    ``ctx.suppress_duplicates`` (or, when that is None, ``annotator_facing``), overlapping duplicates."""
    rows = image.rows
    if ctx.only_categories is not None:
        rows = [r for r in rows if r.category_id in ctx.only_categories]
    return prelabel_rows(rows, ctx.task, ctx.score_threshold,
                         annotator_facing if ctx.suppress_duplicates is None else ctx.suppress_duplicates,
                         ctx.duplicate_iou)


def prelabel_rows(rows: Sequence[PredictionRow], task: str, score_threshold: float, suppress: bool,
                  duplicate_iou: float = DEFAULT_DUPLICATE_IOU) -> list[PredictionRow]:
    """Stored rows as a view: instances and boxes at or above ``score_threshold`` (predict jobs store
    everything above a lower floor), without overlapping duplicates when ``suppress``."""
    if task not in INSTANCE_TASKS:
        return list(rows)
    kept = [r for r in rows if r.score is None or r.score >= score_threshold]
    return suppress_duplicates(kept, duplicate_iou) if suppress else kept


def parse_category_ids(text: str | None) -> frozenset[int] | None:
    """``"3,7"`` → ``{3, 7}`` (the ``--categories`` / ``categories=`` option); None → None (all);
    ``""`` → the empty set (no category). `ConfigError` for anything that is not a comma-separated id list."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if parts == [""]:
        return frozenset()
    bad = [p for p in parts if not p.isdigit()]
    if bad:
        raise ConfigError(f"categories {text!r}: {bad[0]!r} is not a category id; give original ids, comma-separated")
    return frozenset(int(p) for p in parts)


def export(images: Iterable[ExportImage], names: Sequence[str], ctx: ExportContext, out: Path) -> dict[str, list[Path]]:
    """Write every image in every format under ``out``; returns the files each format wrote.

    Images stream through all writers at once, so the rows are read a single time."""
    checked = check_formats(names, ctx.task)
    writers = {name: PREDICTION_FORMATS.get(name)(Path(out), ctx) for name in checked}
    try:
        for image in images:
            for writer in writers.values():
                writer.add(image)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    return {name: writer.close() for name, writer in writers.items()}


class MultiExport:
    """The same as `export`, fed one image at a time (the prediction loop of ``segpipe predict``)."""

    def __init__(self, names: Sequence[str], ctx: ExportContext, out: Path) -> None:
        self.names = check_formats(names, ctx.task)
        self.writers = {name: PREDICTION_FORMATS.get(name)(Path(out), ctx) for name in self.names}
        self.images = 0

    def add(self, image: ExportImage) -> None:
        for writer in self.writers.values():
            writer.add(image)
        self.images += 1

    def close(self) -> dict[str, list[Path]]:
        return {name: writer.close() for name, writer in self.writers.items()}

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()
