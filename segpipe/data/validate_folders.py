"""Checks for the folder layouts: image + mask PNG folders, and class-per-folder images.

Files and ids follow segpipe.data.folders, so that `Report.bad_image_ids()` names what a source skips:
- mask folders: images directly in the images folder, image id = file stem; two images with one
  stem are an error (they would share one mask);
- class folders: images anywhere under ``root/<class>/``, image id = path relative to the root
  without suffix (``"cat/img_01"``); ``a.png`` and ``a.jpg`` side by side share an id (warning).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segpipe.data.images import read_mask
from segpipe.data.validate_common import (
    Report,
    examples,
    inspect_images,
    list_images,
    parallel_map,
    strict_decoding,
)
from segpipe.errors import ConfigError, DataError
from segpipe.task_kinds import DENSE_TASKS, traits
from segpipe.vocabulary import IGNORE_INDEX


def validate_mask_folders(
    images_dir: str | Path,
    masks_dir: str | Path,
    *,
    task: str,
    classes: list[str] | None = None,
    foreground_value: int | None = None,
    mask_suffix: str = ".png",
    ignore_index: int = IGNORE_INDEX,
    decode: bool = True,
) -> Report:
    """Check ``images_dir/<stem>.<ext>`` against ``masks_dir/<stem><mask_suffix>``.

    Mask values allowed (checked only with `decode`, which reads every mask):
    - semantic with `classes` (names of pixel values 1..K; a leading "background" entry names 0):
      0..K and `ignore_index`; without `classes` K is unknown, values go unchecked (a warning says so);
    - binary with `foreground_value`: 0, `foreground_value` and `ignore_index`; without it any
      non-zero value is foreground and every value is legal.
    `decode=False` compares sizes from the file headers only.
    """
    if not traits(task).dense:
        raise ConfigError(f"image + mask folders fit tasks {' and '.join(DENSE_TASKS)}, not {task!r}")
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    report = Report(source=f"mask folders {images_dir} + {masks_dir}")
    if not _folder_exists(images_dir, "images", report) or not _folder_exists(masks_dir, "masks", report):
        return report
    images = list_images(images_dir)
    masks = {p.name[: -len(mask_suffix)]: p for p in sorted(masks_dir.iterdir())
             if p.is_file() and p.name.endswith(mask_suffix) and len(p.name) > len(mask_suffix)}
    report.checked = {"images": len(images), "masks": len(masks)}
    if not images:
        report.error("empty-dataset", f"no image files in {images_dir}", file=images_dir)
        return report

    pairs = _pair(images, masks, masks_dir, mask_suffix, report)
    allowed = _allowed_values(task, classes, foreground_value, ignore_index)
    if not traits(task).single_foreground and not classes:
        report.warning("classes-unknown", "semantic masks without class names: pixel values are not checked "
                       "(a job needs data.classes)", file=masks_dir)
    image_checks = inspect_images([image for image, _ in pairs], decode)
    with strict_decoding():
        mask_checks = parallel_map(lambda pair: _inspect_mask(pair[1], decode), pairs)
    for (image, mask), found, mask_found in zip(pairs, image_checks, mask_checks, strict=False):
        where = f"image {image.stem}"
        if found.problem is not None:
            code, words = found.problem
            report.error(code, f"{where} ({image.name}): {words}", file=image, image_id=image.stem)
        if mask_found.problem is not None:
            report.error("mask-unreadable", f"{where}: mask {mask.name}: {mask_found.problem}", file=mask,
                         image_id=image.stem)
            continue
        if found.size is not None and mask_found.size is not None and mask_found.size != found.size:
            (h, w), (mh, mw) = found.size, mask_found.size
            report.error("mask-size-mismatch", f"{where}: mask {mask.name} is {mw}×{mh} (w×h), the image is "
                         f"{w}×{h}", file=mask, image_id=image.stem)
        if allowed is not None and mask_found.histogram is not None:
            _check_values(mask_found.histogram, allowed, where, mask, report, image.stem)
    return report


def _folder_exists(folder: Path, what: str, report: Report) -> bool:
    if not folder.is_dir():
        report.error("folder-missing", f"the {what} folder {folder} does not exist", file=folder)
        return False
    return True


def _pair(images: list[Path], masks: dict[str, Path], masks_dir: Path, suffix: str,
          report: Report) -> list[tuple[Path, Path]]:
    """(image, mask) for each image that has exactly one stem and a mask; report the others."""
    by_stem: defaultdict[str, list[Path]] = defaultdict(list)
    for image in images:
        by_stem[image.stem].append(image)
    pairs = []
    for stem, files in by_stem.items():
        if len(files) > 1:
            report.error("duplicate-stem", f"image {stem}: {examples([f.name for f in files])} share one "
                         f"name and so one mask", file=files[0], image_id=stem)
        elif stem not in masks:
            report.error("mask-missing", f"image {stem} ({files[0].name}): no mask {stem}{suffix} in "
                         f"{masks_dir}", file=files[0], image_id=stem)
        else:
            pairs.append((files[0], masks[stem]))
    orphans = sorted(set(masks) - set(by_stem))
    if orphans:
        report.warning("mask-without-image", f"{len(orphans)} masks have no image (ignored): "
                       f"{examples([masks[s].name for s in orphans])}", file=masks_dir)
    return pairs


@dataclass(frozen=True)
class _MaskCheck:
    size: tuple[int, int] | None = None  # (height, width)
    histogram: np.ndarray | None = None  # pixel count per value 0..255; None without decode
    problem: str | None = None


def _inspect_mask(path: Path, decode: bool) -> _MaskCheck:
    from segpipe.data.admission import ImageRefused, admit_file

    try:
        admit_file(path)
    except ImageRefused as e:
        if e.code != "image-unreadable":  # an unreadable header is reported below, as before
            return _MaskCheck(problem=str(e).removeprefix(f"{path}: "))
    if not decode:
        from PIL import Image

        try:  # header only; masks are never EXIF-rotated (read_mask ignores orientation)
            with Image.open(path) as im:
                return _MaskCheck(size=(im.size[1], im.size[0]))
        except Exception as e:  # noqa: BLE001 - a validator reports whatever Pillow raises
            return _MaskCheck(problem=f"not a readable image ({type(e).__name__}: {e})")
    try:
        mask = read_mask(path)
    except DataError as e:
        return _MaskCheck(problem=str(e).removeprefix(f"{path}: "))
    return _MaskCheck(size=mask.shape[:2], histogram=np.bincount(mask.ravel(), minlength=256))


def _allowed_values(task: str, classes: list[str] | None, foreground_value: int | None,
                    ignore_index: int) -> tuple[set[int], str] | None:
    """(allowed values, their description) or None when every value is legal."""
    if not traits(task).single_foreground:
        if not classes:
            return None
        k = len(classes) - (classes[0].lower() == "background")  # values 1..K name classes, 0 is background
        return set(range(k + 1)) | {ignore_index}, f"the classes 0..{k} or the ignore value {ignore_index}"
    if foreground_value is None:
        return None
    return {0, foreground_value, ignore_index}, f"0, the foreground value {foreground_value} or the ignore value {ignore_index}"


def _check_values(histogram: np.ndarray, allowed: tuple[set[int], str], where: str, mask: Path,
                  report: Report, image_id: str) -> None:
    values, described = allowed
    bad = [int(v) for v in np.flatnonzero(histogram) if int(v) not in values]
    if bad:
        listed = examples([f"{v} ({int(histogram[v])} px)" for v in bad])
        report.error("mask-values", f"{where}: mask {mask.name} has values {listed}; allowed are {described}",
                     file=mask, image_id=image_id)


# -------------------------------------------------------------------------------------- class folders


def validate_class_folders(root: str | Path, *, decode: bool = True) -> Report:
    """Check ``root/<class name>/**/<image>``: class folders exist, hold images, and the images read.
    Classes are the sub-folders (sorted names, hidden ones skipped); images directly in `root` are
    not part of any class."""
    root = Path(root)
    report = Report(source=f"class folders {root}")
    if not _folder_exists(root, "class", report):
        return report
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    stray = list_images(root)
    if stray:
        report.warning("stray-images", f"{len(stray)} images lie directly in the root, outside any class "
                       f"folder (ignored): {examples([p.name for p in stray])}", file=root)
    images = {d.name: list_images(d, recursive=True) for d in class_dirs}
    report.checked = {"classes": len(class_dirs), "images": sum(len(v) for v in images.values())}
    if not class_dirs:
        report.error("no-classes", "no class folders: expected root/<class name>/<images>", file=root)
        return report
    if len(class_dirs) == 1:
        report.warning("one-class", f"only one class folder ({class_dirs[0].name}); a classifier needs two or more",
                       file=root)
    for name, files in images.items():
        if not files:
            report.warning("empty-class", f"class {name!r} has no images", file=root / name)
    files = [f for class_files in images.values() for f in class_files]
    ids = [f.relative_to(root).with_suffix("").as_posix() for f in files]  # as segpipe.data.folders names them
    _shared_ids(files, ids, root, report)
    for path, image_id, found in zip(files, ids, inspect_images(files, decode), strict=False):
        if found.problem is not None:
            code, words = found.problem
            report.error(code, f"image {image_id} ({path.name}): {words}", file=path, image_id=image_id)
    return report


def _shared_ids(files: list[Path], ids: list[str], root: Path, report: Report) -> None:
    by_id: defaultdict[str, list[Path]] = defaultdict(list)
    for f, image_id in zip(files, ids, strict=False):
        by_id[image_id].append(f)
    clashes = [f"{i} ({', '.join(f.name for f in fs)})" for i, fs in by_id.items() if len(fs) > 1]
    if clashes:
        report.warning("duplicate-stem", f"{len(clashes)} image ids are shared by files that differ only in "
                       f"suffix, so their predictions clash: {examples(clashes, 3)}", file=root)
