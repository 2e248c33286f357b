"""The snapshot sources: one registered reader each, found by name (``segpipe data pull``, the API, the
retraining tick). A reader turns what the user named (an archive's path, a Label Studio project id)
into a `Draft`; `segpipe.snapshots.pull` stores it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from segpipe.errors import ConfigError
from segpipe.registry import Registry
from segpipe.snapshots import cvat
from segpipe.snapshots.archive import Archive
from segpipe.snapshots.draft import Draft

if TYPE_CHECKING:
    from segpipe.settings import Settings


@dataclass(frozen=True)
class PullContext:
    settings: Settings
    categories: Sequence[str] | None = None  # the model's class names, where the source maps labels by name
    category_ids: Sequence[int] | None = None  # the model's COCO ids of those classes (None: 1..N)


Reader = Callable[[str, PullContext], Draft]
SNAPSHOT_FORMATS: Registry[Reader] = Registry("snapshot source format")


def _archive_reader(read: Callable[[Archive], Draft]) -> Reader:
    def reader(source: str, ctx: PullContext) -> Draft:
        with Archive(Path(source)) as archive:
            return read(archive)

    return reader


def _label_studio(source: str, ctx: PullContext) -> Draft:
    from segpipe.snapshots.label_studio_pull import read_project

    if not source.isdigit():
        raise ConfigError(f"a Label Studio source is a project id (a number), got {source!r}")
    if not ctx.categories:
        raise ConfigError("pulling a Label Studio project needs the model whose classes its labels map to")
    return read_project(ctx.settings, int(source), ctx.categories, ctx.category_ids)


SNAPSHOT_FORMATS.add("cvat-coco", _archive_reader(cvat.read_coco),
                     description="CVAT export \"COCO 1.0\" (zip, with images)")
SNAPSHOT_FORMATS.add("cvat-mask", _archive_reader(cvat.read_masks),
                     description="CVAT export \"Segmentation mask 1.1\" (zip, with images)")
SNAPSHOT_FORMATS.add("cvat-images", _archive_reader(cvat.read_cvat_images),
                     description="CVAT export \"CVAT for images 1.1\" (zip, with images)")
SNAPSHOT_FORMATS.add("label-studio", _label_studio,
                     description="a Label Studio project, by id, through its export API (SEGPIPE_LABEL_STUDIO_URL)")
ARCHIVE_FORMATS = ("cvat-coco", "cvat-mask", "cvat-images")
