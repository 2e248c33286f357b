"""The dataset layouts: one registered `Layout` per way a split's data can lie on disk or in a bucket.

A layout is chosen by the path keys a data source gives (``{images, annotations}`` is COCO) and
carries everything the rest of segpipe asks of it:

- ``paths``: its path keys, each a folder or a file, in the order its content hash reads them;
- ``tasks``: the task kinds it can feed (a config that asks for another is refused when it loads);
- ``read``: the `segpipe.data.sources.Source` of one split (training, evaluation, `validate --plots`);
- ``validate``: the dataset check of one split (`segpipe validate`, and before every job);
- ``hash_paths``: what a model version's dataset hash covers (`segpipe.retrain`).

The config loader, path resolution and confinement, submit-time checks, the retraining schedule and
``segpipe validate`` all go through this registry, so a new layout is one `register` here plus its
reader module. This module is vocabulary (the config layer imports it): a reader and a validator are
named as ``(module, function)`` and imported when they run, as job kinds name their runners.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segpipe.errors import ConfigError
from segpipe.registry import Registry
from segpipe.task_kinds import CLASS_TASKS, DENSE_TASKS, TASK_KINDS

if TYPE_CHECKING:
    from segpipe.config import DataConfig, SourceConfig
    from segpipe.data.sample import ImageId
    from segpipe.data.sources import Source
    from segpipe.data.validate_common import Report

# (source, data settings, task, image ids to leave out, annotation ids to leave out) → Source
Reader = Callable[["SourceConfig", "DataConfig", str, Collection["ImageId"], Collection[int]], "Source"]
# (source, data settings or None, task or None, decode pixels) → Report
Validator = Callable[["SourceConfig", "DataConfig | None", "str | None", bool], "Report"]


@dataclass(frozen=True)
class PathKey:
    """One path key of a data source: a folder (``images: DIR``) or a file (``annotations: FILE``)."""

    name: str
    folder: bool
    help: str = ""


@dataclass(frozen=True)
class Layout:
    name: str
    title: str  # what error messages call it: "COCO", "class-per-folder"
    paths: tuple[PathKey, ...]
    tasks: tuple[str, ...]
    read: tuple[str, str] | Reader  # (module, function), imported when a source is built
    validate: tuple[str, str] | Validator  # (module, function), imported when a split is checked
    default_task: str | None = None  # `segpipe validate --plots` without --task; None: --task required
    excludes_images: bool = False  # `read` drops the excluded image ids itself (else sources.py wraps it)
    hashed: Callable[[SourceConfig], list[Any]] | None = None  # None: every path, in `paths` order

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(p.name for p in self.paths)

    def shape(self) -> str:
        """``{images, annotations} (COCO)``: how a person writes this layout."""
        return f"{{{', '.join(p.name for p in self.paths)}}} ({self.title})"

    def check_task(self, task: str, where: str) -> None:
        """ConfigError when this layout cannot feed `task`."""
        if task not in self.tasks:
            fits = f"task {self.tasks[0]}" if len(self.tasks) == 1 else f"tasks {' and '.join(self.tasks)}"
            raise ConfigError(f"{where}{self.title} data ({{{', '.join(p.name for p in self.paths)}}}) "
                              f"only fits {fits}, not {task}")

    def reader(self) -> Reader:
        return _function(self.read)

    def validator(self) -> Validator:
        return _function(self.validate)

    def hash_paths(self, source: SourceConfig) -> list[Any]:
        """The files and folders (paths or URIs) whose content identifies this split's data."""
        if self.hashed is not None:
            return self.hashed(source)
        return list(source.paths().values())


def _function(ref: tuple[str, str] | Callable[..., Any]) -> Callable[..., Any]:
    if isinstance(ref, tuple):
        module, name = ref
        found: Callable[..., Any] = getattr(importlib.import_module(module), name)
        return found
    return ref


LAYOUTS: Registry[Layout] = Registry("data layout")
_ORDER: list[str] = []  # registration order: how messages list the layouts (built-ins first)


def register(layout: Layout, description: str = "") -> Layout:
    """Add `layout` to `LAYOUTS` under its name."""
    LAYOUTS.add(layout.name, layout, description=description, tags=layout.tasks)
    _ORDER.append(layout.name)
    return layout


def in_order() -> list[Layout]:
    """Every registered layout, in registration order."""
    return [LAYOUTS.get(name) for name in _ORDER]


def path_keys() -> list[str]:
    """Every path key some layout takes (a data source accepts these and no others)."""
    seen: dict[str, None] = {}
    for layout in in_order():
        seen.update((p.name, None) for p in layout.paths)
    return list(seen)


def layout_for(keys: Collection[str], *, what: str = "a data source takes") -> Layout:
    """The layout whose path keys are exactly `keys`; ConfigError listing every layout's shape."""
    given = frozenset(keys)
    for layout in in_order():
        if layout.keys == given:
            return layout
    shapes = [layout.shape() for layout in in_order()]
    listed = ", ".join(shapes[:-1]) + f" or {shapes[-1]}" if len(shapes) > 1 else shapes[0]
    raise ConfigError(f"{what} {listed}; got {{{', '.join(sorted(given)) or 'nothing'}}}")


def folder_keys(layout: Layout) -> Sequence[str]:
    return [p.name for p in layout.paths if p.folder]


# ---------------------------------------------------------------------------------------- built-ins

register(Layout(
    "coco", "COCO",
    (PathKey("images", True, "folder of the images"), PathKey("annotations", False, "COCO instances JSON file")),
    TASK_KINDS,
    ("segpipe.data.sources", "read_coco"), ("segpipe.data.validate", "check_coco"),
    default_task="instance", excludes_images=True,
), description="COCO instances JSON over an image folder")
register(Layout(
    "mask_folders", "image + mask folder",
    (PathKey("images", True, "folder of the images"), PathKey("masks", True, "folder of mask PNGs, one per image")),
    DENSE_TASKS,
    ("segpipe.data.sources", "read_mask_folders"), ("segpipe.data.validate", "check_mask_folders"),
), description="image folder + mask PNG folder (mask of a.jpg is masks/a.png)")
register(Layout(
    "class_folders", "class-per-folder",
    (PathKey("root", True, "class-per-folder images: root/<class name>/*"),),
    CLASS_TASKS,
    ("segpipe.data.sources", "read_class_folders"), ("segpipe.data.validate", "check_class_folders"),
    default_task="classification",
), description="root/<class name>/*.png")
