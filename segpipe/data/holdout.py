"""Hold out a contiguous block of a dataset as the validation split, written as two datasets on disk.

A job config reads whole folders (or whole COCO files), one per split. Data whose images are ordered
and correlated (consecutive microscope sections, video frames) must not be split at random — a random
split puts near-duplicates of validation images in the training set and inflates every metric. These
helpers cut one contiguous block out instead, by position in natural file-name order (``2.png``
before ``10.png``, as the folder sources list images), and write it out so a config can point at it:

- ``holdout_mask_folders(images, masks, out, val)``: copies image/mask pairs into
  ``out/{train,val}/{images,masks}/`` (copies, not links: the split keeps working when the source
  moves, and a 30-slice dataset costs nothing to copy);
- ``holdout_coco(images, annotations, out, val)``: writes ``out/train.json`` and ``out/val.json``,
  each with its images and their annotations, and every category in both (so both splits share one
  category map); image files stay where they are.

Both write ``out/split.json``: the source paths, the held-out positions, and the file names of each
split, so a result can always be traced to the exact images it was measured on.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segpipe.data.folders import list_images, natural_key
from segpipe.errors import ConfigError, DataError

SPLIT_FILE = "split.json"


@dataclass(frozen=True)
class HoldoutSplit:
    """What a holdout helper wrote. ``train``/``val``: the split folders (mask folders) or the two
    annotation files (COCO); names: the image file names of each split, in natural order."""

    train: Path
    val: Path
    train_names: list[str]
    val_names: list[str]


def parse_block(spec: str, count: int) -> range:
    """``"25-29"`` → positions 25..29 (inclusive, 0-based); ``"7"`` → position 7 alone.

    `count` is the number of images; the block must lie inside 0..count-1 and leave at least one image
    for training. Raises ConfigError naming the spec.
    """
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", spec)
    if match is None:
        raise ConfigError(f"holdout block {spec!r}: expected FIRST-LAST positions (e.g. 25-29) or one position")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    if last < first:
        raise ConfigError(f"holdout block {spec!r}: the last position comes before the first")
    if last >= count:
        raise ConfigError(f"holdout block {spec!r}: there are only {count} images (positions 0..{count - 1})")
    if last - first + 1 >= count:
        raise ConfigError(f"holdout block {spec!r} holds out all {count} images; nothing is left to train on")
    return range(first, last + 1)


def holdout_mask_folders(
    images: str | Path,
    masks: str | Path,
    out_dir: str | Path,
    val: range | str,
    mask_suffix: str = ".png",
    overwrite: bool = False,
) -> HoldoutSplit:
    """Copy the image/mask pairs of `images` + `masks` into ``out_dir/train`` and ``out_dir/val``
    (each with ``images/`` and ``masks/``); ``val`` is a block of positions (``parse_block`` spec or
    range) in natural order. The mask of ``a.jpg`` is ``masks/a`` + `mask_suffix`.

    Raises DataError when an image has no mask, ConfigError when ``out_dir/train`` or ``out_dir/val``
    exists, unless ``overwrite`` and they are an earlier holdout's (``split.json`` beside them): then
    they are replaced.
    """
    images, masks, out = Path(images), Path(masks), Path(out_dir)
    files = list_images(images)
    if not files:
        raise DataError(f"{images}: no image files")
    block = parse_block(val, len(files)) if isinstance(val, str) else _check_range(val, len(files))
    pairs = []
    for path in files:
        mask = masks / (path.stem + mask_suffix)
        if not mask.is_file():
            raise DataError(f"{path}: its mask {mask} does not exist")
        pairs.append((path, mask))
    _prepare(out, ("train", "val"), overwrite)
    names: dict[str, list[str]] = {"train": [], "val": []}
    for position, (image, mask) in enumerate(pairs):
        split = "val" if position in block else "train"
        for src, kind in ((image, "images"), (mask, "masks")):
            dest = out / split / kind
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / src.name)
        names[split].append(image.name)
    _write_record(out, {"images": str(images.resolve()), "masks": str(masks.resolve())}, block, names)
    return HoldoutSplit(out / "train", out / "val", names["train"], names["val"])


def holdout_coco(
    images: str | Path,
    annotations: str | Path,
    out_dir: str | Path,
    val: range | str,
    overwrite: bool = False,
) -> HoldoutSplit:
    """Split a COCO instances file into ``out_dir/train.json`` and ``out_dir/val.json`` by a block of
    positions (``parse_block`` spec or range) in the natural order of the images' ``file_name``.

    Every top-level key is kept (info, licenses, categories: all categories in both files); images
    and annotations go to the split of their image. Image files are not copied: a config pairs
    `images` with either file. Raises DataError naming the file for unreadable or malformed JSON,
    ConfigError when an output file exists (unless ``overwrite``, as for ``holdout_mask_folders``).
    """
    images, annotations, out = Path(images), Path(annotations), Path(out_dir)
    data = _read_coco(annotations)
    entries = sorted(data["images"], key=lambda im: natural_key(str(im["file_name"])))
    if not entries:
        raise DataError(f"{annotations}: the file lists no images")
    block = parse_block(val, len(entries)) if isinstance(val, str) else _check_range(val, len(entries))
    split_of = {im["id"]: ("val" if i in block else "train") for i, im in enumerate(entries)}
    for ann in data["annotations"]:
        if ann["image_id"] not in split_of:
            raise DataError(
                f"{annotations}: annotation {ann['id']} refers to image {ann['image_id']}, which is not listed"
            )
    _prepare(out, ("train.json", "val.json"), overwrite)
    names: dict[str, list[str]] = {}
    for split in ("train", "val"):
        subset = dict(data)
        subset["images"] = [im for im in entries if split_of[im["id"]] == split]
        subset["annotations"] = [a for a in data["annotations"] if split_of[a["image_id"]] == split]
        (out / f"{split}.json").write_text(json.dumps(subset))
        names[split] = [str(im["file_name"]) for im in subset["images"]]
    _write_record(out, {"images": str(images.resolve()), "annotations": str(annotations.resolve())}, block, names)
    return HoldoutSplit(out / "train.json", out / "val.json", names["train"], names["val"])


def _check_range(block: range, count: int) -> range:
    if block.step != 1 or len(block) == 0:
        raise ConfigError(f"holdout block {block}: needs a non-empty contiguous range")
    return parse_block(f"{block.start}-{block.stop - 1}", count)


def _read_coco(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise DataError(f"{path}: cannot read annotations ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a COCO file is a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: COCO key {key!r} is missing or not a list")
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise DataError(f"{path}: images[{i}] needs 'id' and 'file_name'")
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "id" not in ann or "image_id" not in ann:
            raise DataError(f"{path}: annotations[{i}] needs 'id' and 'image_id'")
    return data


def _prepare(out: Path, entries: tuple[str, ...], overwrite: bool) -> None:
    """Make `out`; refuse existing outputs unless `overwrite`, which removes them (so no file of an
    earlier, different split survives in a split folder). Only an earlier holdout's outputs (next to
    its ``split.json``) are ever removed: a mistyped `out` must not delete someone's data."""
    for name in entries:
        target = out / name
        if not target.exists():
            continue
        if not overwrite:
            raise ConfigError(f"{target} already exists; remove it or pass overwrite (--force) to replace it")
        if not (out / SPLIT_FILE).is_file():
            raise ConfigError(f"{target} already exists and {out} holds no {SPLIT_FILE} from an earlier holdout; "
                              "not replacing it: choose an empty output folder")
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _write_record(out: Path, source: dict[str, str], block: range, names: dict[str, list[str]]) -> None:
    record = {"source": source, "val_positions": [block.start, block.stop - 1], **names}
    (out / SPLIT_FILE).write_text(json.dumps(record, indent=1))
