"""Folder layouts → Samples: image + mask PNG folders (semantic, binary) and class-per-folder images.

Image + mask folders: ``images/NAME.jpg`` pairs with ``masks/NAME + mask_suffix``. Images are listed
in natural order (``2.png`` before ``10.png``) and ``image_id`` is the file stem.

- ``semantic``: a mask pixel is a class index: 0 background, 1..K the classes. ``classes`` is
  required: it names values 1..K in order (a leading ``"background"`` entry is accepted and names 0).
  Inferring classes from the pixel values would mean reading every mask up front and would silently
  miss a class absent from the files seen, so it is not done. Values above K other than
  ``ignore_index`` are a DataError naming the mask file.
- ``binary``: ``foreground_value`` None = any non-zero pixel is foreground, else only that value (other
  values are background). ``ignore_index`` pixels stay ignore, except when ``foreground_value`` is
  that same value (masks saved as 0/255): then they are foreground.

Class folders: ``root/<class name>/**/*.png|jpg|...``, classes sorted by name, ``class_id`` 0..K-1,
``image_id`` the path relative to root without suffix (``"cat/img_01"``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segpipe.data.categories import CategoryMap
from segpipe.data.images import IMAGE_SUFFIXES, read_image, read_mask
from segpipe.data.sample import Sample
from segpipe.errors import ConfigError, DataError
from segpipe.paths import active_roots
from segpipe.task_kinds import DENSE_TASKS, traits
from segpipe.vocabulary import IGNORE_INDEX


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key comparing digit runs as numbers: ``img2`` < ``img10``; case-insensitive, ties by name."""
    parts = re.split(r"(\d+)", name)
    return (*tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name)


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files (by suffix, any case) under `folder`, hidden files skipped, in natural order."""
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    found = folder.rglob("*") if recursive else folder.iterdir()
    files = [
        p for p in found
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(files, key=lambda p: natural_key(p.relative_to(folder).as_posix()))


class MaskFolderSource:
    """Semantic or binary samples from an image folder and a mask folder (see module docstring)."""

    def __init__(
        self,
        images_dir: str | Path,
        masks_dir: str | Path,
        task: str,
        classes: Sequence[str] | None = None,
        foreground_value: int | None = None,
        mask_suffix: str = ".png",
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        if not traits(task).dense:
            raise ConfigError(f"image + mask folders fit tasks {' and '.join(DENSE_TASKS)}, not {task!r}")
        self.images_dir, self.masks_dir = Path(images_dir), Path(masks_dir)
        self.task = task
        self.foreground_value = foreground_value
        self.ignore_index = int(ignore_index)
        self.category_map = _mask_category_map(task, classes, foreground_value)
        self._roots = active_roots()  # captured: loader worker processes read with the same confinement
        self._images = list_images(self.images_dir)
        if not self._images:
            raise DataError(f"{self.images_dir}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        self._masks = [self.masks_dir / (p.stem + mask_suffix) for p in self._images]
        seen: dict[str, Path] = {}
        for image, mask in zip(self._images, self._masks, strict=False):
            if image.stem in seen:
                raise DataError(f"{seen[image.stem]} and {image}: two images share the stem {image.stem!r}")
            seen[image.stem] = image
            if not mask.is_file():
                raise DataError(f"{image}: its mask {mask} does not exist")

    def __len__(self) -> int:
        return len(self._images)

    @property
    def image_ids(self) -> list[str]:
        return [p.stem for p in self._images]

    def image_path(self, index: int) -> Path:
        return self._images[index]

    def mask_path(self, index: int) -> Path:
        return self._masks[index]

    def load(self, index: int) -> Sample:
        image_path, mask_path = self._images[index], self._masks[index]
        image, mask = read_image(image_path, self._roots), read_mask(mask_path, self._roots)
        if mask.shape != image.shape[:2]:
            raise DataError(
                f"{mask_path}: mask is {mask.shape[0]}×{mask.shape[1]}, its image {image_path.name} is "
                f"{image.shape[0]}×{image.shape[1]}"
            )
        label_map = self._binary(mask) if traits(self.task).single_foreground else self._semantic(mask, mask_path)
        meta = {"file_name": image_path.name, "mask_file": mask_path.name, "orig_size": image.shape[:2]}
        return Sample(image, image_path.stem, label_map=label_map, meta=meta)

    def _semantic(self, mask: np.ndarray, path: Path) -> np.ndarray:
        k = self.category_map.num_categories
        if int(mask.max(initial=0)) > k:
            values = np.unique(mask)
            bad = values[(values > k) & (values != self.ignore_index)]
            if len(bad):
                raise DataError(
                    f"{path}: pixel values {bad.tolist()} are not classes (0..{k}, {self.ignore_index} = ignore)"
                )
        return mask

    def _binary(self, mask: np.ndarray) -> np.ndarray:
        if self.foreground_value is None:
            foreground = (mask != 0) & (mask != self.ignore_index)
        else:
            foreground = mask == self.foreground_value
        out = foreground.view(np.uint8)  # a fresh array already: no copy needed
        if self.foreground_value != self.ignore_index:  # 0/255 masks with foreground 255 have no ignore
            np.putmask(out, (mask == self.ignore_index) & ~foreground, self.ignore_index)
        return out


def _mask_category_map(task: str, classes: Sequence[str] | None, foreground_value: int | None) -> CategoryMap:
    """Semantic: ids = pixel values 1..K. Binary: one category whose id is the foreground pixel value."""
    names = list(classes or [])
    if names and names[0].lower() == "background":
        names = names[1:]
    if traits(task).single_foreground:
        value = 1 if foreground_value is None else int(foreground_value)
        return CategoryMap((value,), (names[0] if len(names) == 1 else "foreground",), 1, (value,))
    if not names:
        raise ConfigError(
            "mask folders for task semantic need data.classes: the names of pixel values 1, 2, ... in order"
        )
    return CategoryMap(tuple(range(1, len(names) + 1)), tuple(names), offset=1)


class ClassFolderSource:
    """Classification samples from ``root/<class name>/**/<image>`` (see module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: class folder root not found")
        classes = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise DataError(f"{self.root}: no class folders (expected root/<class name>/<images>)")
        self.category_map = CategoryMap(tuple(range(len(classes))), tuple(classes), offset=0)
        self._roots = active_roots()  # captured: loader worker processes read with the same confinement
        self._files: list[tuple[Path, int]] = [
            (path, k) for k, name in enumerate(classes) for path in list_images(self.root / name, recursive=True)
        ]
        if not self._files:
            raise DataError(f"{self.root}: the class folders {classes} hold no image files")

    def __len__(self) -> int:
        return len(self._files)

    @property
    def image_ids(self) -> list[str]:
        return [self._image_id(path) for path, _ in self._files]

    def image_path(self, index: int) -> Path:
        return self._files[index][0]

    def load(self, index: int) -> Sample:
        path, class_id = self._files[index]
        image = read_image(path, self._roots)
        meta = {"file_name": path.relative_to(self.root).as_posix(), "orig_size": image.shape[:2]}
        return Sample(image, self._image_id(path), class_id=class_id, meta=meta)

    def _image_id(self, path: Path) -> str:
        return path.relative_to(self.root).with_suffix("").as_posix()
