"""The `Source` protocol (anything that yields Samples by index) and the one builder from config."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from segpipe.config import DataConfig, SourceConfig
from segpipe.data.categories import CategoryMap
from segpipe.data.coco import CocoSource
from segpipe.data.folders import ClassFolderSource, MaskFolderSource
from segpipe.data.sample import ImageId, Sample


@runtime_checkable
class Source(Protocol):
    """Random access to the Samples of one split.

    ``image_ids[i]`` is the ``image_id`` of ``load(i)`` (ids may repeat: COCO classification crops);
    ``load`` decodes on every call (no caching) and raises DataError naming file / image / annotation.
    A source that feeds ``instance`` or ``detection`` also has ``coco``: its ground truth as a
    pycocotools ``COCO`` (original sizes, the same image ids), which box and mask AP are computed on.
    """

    category_map: CategoryMap

    @property
    def image_ids(self) -> Sequence[ImageId]: ...

    def image_path(self, index: int) -> Path: ...

    def load(self, index: int) -> Sample: ...

    def __len__(self) -> int: ...


def build_source(
    source: SourceConfig,
    data: DataConfig,
    task: str,
    exclude_images: Collection[ImageId] = (),
    exclude_annotations: Collection[int] = (),
) -> Source:
    """The Source for one split, read by its registered layout (`segpipe.layouts`).

    ``exclude_images`` / ``exclude_annotations`` are ids that validation flagged, dropped when
    ``data.skip_invalid`` is on (folder layouts have no annotations; their image ids are file stems).
    """
    layout = source.layout_entry()
    layout.check_task(task, "")
    built = layout.reader()(source, data, task, exclude_images, exclude_annotations)
    return _without(built, exclude_images) if exclude_images and not layout.excludes_images else built


def read_coco(source: SourceConfig, data: DataConfig, task: str, exclude_images: Collection[ImageId],
              exclude_annotations: Collection[int]) -> Source:
    """The ``coco`` layout's reader."""
    return CocoSource(source.path("images"), source.path("annotations"), task, categories=data.categories,
                      classification_source=data.classification_source, crop_padding=data.crop_padding,
                      ignore_index=data.ignore_index, exclude_images=exclude_images,  # type: ignore[arg-type]
                      exclude_annotations=exclude_annotations)


def read_mask_folders(source: SourceConfig, data: DataConfig, task: str, exclude_images: Collection[ImageId],
                      exclude_annotations: Collection[int]) -> Source:
    """The ``mask_folders`` layout's reader (excluded images are dropped by `build_source`)."""
    return MaskFolderSource(source.path("images"), source.path("masks"), task, classes=data.classes,
                            foreground_value=data.foreground_value, mask_suffix=source.mask_suffix,
                            ignore_index=data.ignore_index)


def read_class_folders(source: SourceConfig, data: DataConfig, task: str, exclude_images: Collection[ImageId],
                       exclude_annotations: Collection[int]) -> Source:
    """The ``class_folders`` layout's reader (excluded images are dropped by `build_source`)."""
    return ClassFolderSource(source.path("root"))


class _Subset:
    """A folder source minus some image ids (COCO sources exclude natively)."""

    def __init__(self, base: Source, indices: list[int]) -> None:
        self.base = base
        self.indices = indices
        self.category_map = base.category_map

    @property
    def image_ids(self) -> list[ImageId]:
        ids = self.base.image_ids
        return [ids[i] for i in self.indices]

    def image_path(self, index: int) -> Path:
        return self.base.image_path(self.indices[index])

    def load(self, index: int) -> Sample:
        return self.base.load(self.indices[index])

    def __len__(self) -> int:
        return len(self.indices)


def _without(base: Source, exclude: Collection[ImageId]) -> Source:
    skip = set(exclude)
    return _Subset(base, [i for i, image_id in enumerate(base.image_ids) if image_id not in skip])
