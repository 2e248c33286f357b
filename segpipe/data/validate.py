"""Dataset validation: find what is wrong with a dataset before a job trains on it.

Used by ``segpipe validate`` and before every job. Each check returns a `Report` of `Issue`s (see
`segpipe.data.validate_common` for how `data.skip_invalid` uses them); nothing here raises on bad
data, only on a bad call (e.g. a task that does not fit the layout).

Entry points:
- `validate_coco(images_dir, annotations_path, *, decode=True, task=None)`
- `validate_mask_folders(images_dir, masks_dir, *, task, classes=None, foreground_value=None,
  mask_suffix=".png", ignore_index=255, decode=True)`
- `validate_class_folders(root, *, decode=True)`
- `validate_config(config, *, decode=True)`: every split of a job config, whatever its layout.
- `validate_paths(images=, annotations=, masks=, root=, paths=, ...)`: one dataset given by its paths
  (any registered layout, `segpipe.layouts`), as the CLI's flags give it.

``decode=False`` reads image headers only: fast on huge datasets, blind to truncated files.

Issue codes (E = error, W = warning):

COCO file and structure
  annotations-unreadable E, json-invalid E (line / column), json-not-object E, missing-field E,
  wrong-type E, bad-value E (non-positive size, iscrowd not 0/1, negative area), duplicate-id E
  (image, annotation or category), unsafe-file-name E (absolute or '..'), duplicate-file-name W,
  duplicate-category-name W, empty-dataset E (no images), no-annotations E, unused-category W,
  crowd-annotations W (aggregated), images-without-annotations W (aggregated)
COCO annotations
  too-many-annotations E (SEGPIPE_MAX_ANNOTATIONS_PER_DATASET), image-too-many-annotations E (…_PER_IMAGE),
  name-too-long E (a category name over the class-name column),
  unknown-image E, unknown-category E, bad-bbox E, bbox-outside-image E, bad-segmentation E,
  bad-polygon E (fewer than 6 or an odd number of coordinates, non-numbers, flat list),
  polygon-outside-image W, bad-rle E (malformed size or counts), rle-size-mismatch E,
  no-segmentation (E for instance/semantic/binary, aggregated W when the task is unknown),
  empty-segmentation (W when a bbox remains, E for mask tasks or without a bbox), no-geometry E
Image files (all layouts)
  image-missing E, image-unreadable E, image-too-large E (pixels), image-too-big E (bytes), image-truncated E,
  image-corrupt E, image-size-mismatch E
  (COCO width/height vs the file, EXIF orientation applied), duplicate-stem (E mask folders, W class folders)
Mask folders
  folder-missing E, empty-dataset E, mask-missing E, mask-without-image W, mask-unreadable E,
  mask-size-mismatch E, mask-values E, classes-unknown W (semantic without class names)
Class folders
  folder-missing E, no-classes E, one-class W, empty-class W, stray-images W
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from segpipe import layouts
from segpipe.config import DataConfig, JobConfig, SourceConfig, explain_error
from segpipe.data.validate_coco import validate_coco
from segpipe.data.validate_common import Issue, Report
from segpipe.data.validate_folders import validate_class_folders, validate_mask_folders
from segpipe.errors import ConfigError
from segpipe.vocabulary import IGNORE_INDEX

__all__ = [
    "Issue",
    "Report",
    "validate_class_folders",
    "validate_coco",
    "validate_config",
    "validate_mask_folders",
    "validate_paths",
    "validate_source",
]


def validate_config(config: JobConfig, *, decode: bool = True) -> dict[str, Report]:
    """Validate every split of a job config's data section: ``{"train": Report, "val": Report}``
    (val only when configured). Raises ConfigError when the config has no data section."""
    if config.data is None:
        raise ConfigError("the config has no 'data' section: nothing to validate")
    reports = {"train": validate_source(config, config.data.train, decode=decode)}
    if config.data.val is not None:
        reports["val"] = validate_source(config, config.data.val, decode=decode)
    return reports


def validate_source(config: JobConfig, source: SourceConfig, *, decode: bool = True) -> Report:
    """Validate one split (`source`) with the settings of `config` (task, classes, ignore index)."""
    if config.data is None:
        raise ConfigError("the config has no 'data' section: nothing to validate")
    return source.layout_entry().validator()(source, config.data, config.task, decode)


def validate_paths(
    *,
    images: str | Path | None = None,
    annotations: str | Path | None = None,
    masks: str | Path | None = None,
    root: str | Path | None = None,
    task: str | None = None,
    classes: list[str] | None = None,
    foreground_value: int | None = None,
    mask_suffix: str = ".png",
    ignore_index: int = IGNORE_INDEX,
    decode: bool = True,
    paths: Mapping[str, str | Path] | None = None,
) -> Report:
    """Validate one dataset given by its path keys (`images`... or `paths`, for a layout's own keys),
    as the CLI's flags give it: the keys choose the layout (`segpipe.layouts`). Raises ConfigError
    naming every layout's keys when they fit none (and for image + mask folders without a `task`)."""
    given = {k: v for k, v in (("images", images), ("annotations", annotations), ("masks", masks),
                               ("root", root), *(paths or {}).items()) if v is not None}
    layouts.layout_for(given, what="a dataset is")
    try:
        source = SourceConfig.model_validate({**given, "mask_suffix": mask_suffix})
        data = DataConfig(train=source, classes=classes, foreground_value=foreground_value, ignore_index=ignore_index)
    except ValidationError as e:
        raise ConfigError("; ".join(explain_error(err, DataConfig) for err in e.errors())) from None
    return source.layout_entry().validator()(source, data, task, decode)


def check_coco(source: SourceConfig, data: DataConfig | None, task: str | None, decode: bool) -> Report:
    """The ``coco`` layout's validator."""
    return validate_coco(source.path("images"), source.path("annotations"), decode=decode, task=task)


def check_mask_folders(source: SourceConfig, data: DataConfig | None, task: str | None, decode: bool) -> Report:
    """The ``mask_folders`` layout's validator: needs a task (semantic or binary)."""
    if task is None:
        raise ConfigError("image + mask folders need a task: semantic or binary")
    settings: dict[str, Any] = {} if data is None else {
        "classes": data.classes, "foreground_value": data.foreground_value, "ignore_index": data.ignore_index}
    return validate_mask_folders(source.path("images"), source.path("masks"), task=task,
                                 mask_suffix=source.mask_suffix, decode=decode, **settings)


def check_class_folders(source: SourceConfig, data: DataConfig | None, task: str | None, decode: bool) -> Report:
    """The ``class_folders`` layout's validator."""
    return validate_class_folders(source.path("root"), decode=decode)
