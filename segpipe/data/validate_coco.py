"""Checks for a COCO instances dataset: the JSON's structure, its ids and geometry, and its image files.

Stands on its own (plain `json`, no pycocotools index) so it can describe files that pycocotools
would crash on. Compressed RLE strings are parsed here too: pycocotools' C decoder trusts its input
and writes out of bounds on counts that do not add up.

Decisions (see segpipe.data.validate for the list of codes):
- image ids must be integers (the Sample contract's COCO image id); annotation ids too;
- crowd annotations and images without annotations are legal: one aggregated warning each;
- an annotation with no ``segmentation`` key is box-only: an error for tasks that need masks
  (instance, semantic, binary), nothing for detection / classification, one aggregated warning when
  the task is unknown; a segmentation that is present but covers nothing ([] , zero-area polygons,
  RLE without foreground) is an error for mask tasks and when there is no bbox either, nothing for
  detection / classification, else a warning;
- boxes and polygons may spill over the image border by `validate_geometry.SLACK`
  pixels (float rounding).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segpipe.data.annotation_caps import AnnotationCaps, dataset_problem, image_problem, precount
from segpipe.data.validate_common import (
    Report,
    examples,
    inspect_images,
    is_int,
    is_number,
    kind_of,
    stays_inside,
)
from segpipe.data.validate_geometry import bbox_problem, segmentation_problems
from segpipe.limits import text_limits
from segpipe.task_kinds import TRAITS

MASK_TASKS = tuple(name for name, kind in TRAITS.items() if kind.needs_masks)
BOX_TASKS = tuple(name for name, kind in TRAITS.items() if not kind.needs_masks)


def validate_coco(
    images_dir: str | Path, annotations_path: str | Path, *, decode: bool = True, task: str | None = None
) -> Report:
    """Check a COCO instances JSON and the image files it names (``images_dir / file_name``).

    `decode=False` reads image headers only (size, format) instead of decoding every pixel: much
    faster on big datasets, but truncated files go unnoticed. `task` (a task kind, optional) decides
    how annotations without a mask are judged (see the module docstring).
    """
    images_dir, path = Path(images_dir), Path(annotations_path)
    report = Report(source=f"COCO {path}")
    caps = AnnotationCaps.current()
    raw = _read_json(path, report, caps)
    if raw is not None:
        _CocoChecker(images_dir, path, report, task, caps).run(raw, decode)
    return report


def _read_json(path: Path, report: Report, caps: AnnotationCaps) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        report.error("annotations-unreadable", f"cannot read the annotations file ({why})", file=path)
        return None
    too_many = dataset_problem(precount(text), caps, counted_raw=True)
    if too_many is not None:  # before a million dicts are parsed
        report.error("too-many-annotations", too_many, file=path)
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        report.error("json-invalid", f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}", file=path)
        return None


@dataclass
class _Image:
    index: int  # position in the "images" list
    file_name: str | None
    height: int | None
    width: int | None

    @property
    def size(self) -> tuple[int, int] | None:
        return None if self.height is None or self.width is None else (self.height, self.width)


class _CocoChecker:
    """One pass over the JSON; state shared between the sections (known ids, counts per id)."""

    def __init__(self, images_dir: Path, path: Path, report: Report, task: str | None, caps: AnnotationCaps) -> None:
        self.images_dir, self.path, self.report, self.task = images_dir, path, report, task
        self.caps = caps
        self.images: dict[int, _Image] = {}
        self.category_ids: set[int] = set()
        self.category_names: dict[int, str] = {}
        self.anns_per_image: Counter[int] = Counter()
        self.anns_per_category: Counter[int] = Counter()
        self.crowd: list[str] = []
        self.box_only: list[int] = []

    # reports on the annotations JSON
    def error(self, code: str, message: str, image_id: int | None = None, ann_id: int | None = None) -> None:
        self.report.error(code, message, file=self.path, image_id=image_id, annotation_id=ann_id)

    def warning(self, code: str, message: str, image_id: int | None = None, ann_id: int | None = None) -> None:
        self.report.warning(code, message, file=self.path, image_id=image_id, annotation_id=ann_id)

    def run(self, raw: Any, decode: bool) -> None:
        if not isinstance(raw, dict):
            self.error("json-not-object", f"the top level is {kind_of(raw)}; a COCO file is an object "
                       "with 'images', 'annotations' and 'categories' lists")
            return
        sections = {key: self._section(raw, key) for key in ("images", "annotations", "categories")}
        self.report.checked = {key: len(items) for key, items in sections.items()}
        too_many = dataset_problem(len(sections["annotations"]), self.caps)
        if too_many is not None:
            self.error("too-many-annotations", too_many)
            return
        for index, entry in enumerate(sections["images"]):
            self._image(index, entry)
        for index, entry in enumerate(sections["categories"]):
            self._category(index, entry)
        seen_ann: dict[int, int] = {}
        for index, entry in enumerate(sections["annotations"]):
            self._annotation(index, entry, seen_ann)
        self._dataset_level(sections)
        self._image_files(decode)

    def _section(self, raw: dict[str, Any], key: str) -> list[Any]:
        if key not in raw:
            self.error("missing-field", f"the top level has no '{key}' list")
            return []
        if not isinstance(raw[key], list):
            self.error("wrong-type", f"'{key}' is {kind_of(raw[key])}, needs a list")
            return []
        return raw[key]

    # ------------------------------------------------------------------------------------------ images

    def _image(self, index: int, entry: Any) -> None:
        if not isinstance(entry, dict):
            self.error("wrong-type", f"images[{index}] is {kind_of(entry)}, needs an object")
            return
        image_id = self._entry_id(entry, f"images[{index}]")
        if image_id is None:
            return
        where = f"image {image_id}"
        if image_id in self.images:
            first = self.images[image_id].index
            self.error("duplicate-id", f"{where}: id used by images[{first}] and again by images[{index}]",
                       image_id)
            return
        file_name = self._field(entry, "file_name", where, image_id, str)
        if file_name is not None and not stays_inside(file_name):
            self.error("unsafe-file-name", f"{where}: file_name {file_name!r} points outside the images "
                       "folder (absolute or '..')", image_id)
            file_name = None
        height = self._positive(entry, "height", where, image_id)
        width = self._positive(entry, "width", where, image_id)
        self.images[image_id] = _Image(index, file_name, height, width)

    def _entry_id(self, entry: dict[str, Any], label: str, image_id: int | None = None) -> int | None:
        """entry["id"] if it is an integer, else report (missing-field / wrong-type) and None."""
        value = entry.get("id")
        if "id" not in entry:
            self.error("missing-field", f"{label} has no 'id'", image_id)
        elif not is_int(value):
            self.error("wrong-type", f"{label} has id {value!r} ({kind_of(value)}), needs an integer", image_id)
        else:
            return value
        return None

    def _field(self, entry: dict[str, Any], key: str, where: str, image_id: int | None, kind: type,
               ann_id: int | None = None) -> Any:
        """entry[key] if present and of `kind`, else report (missing-field / wrong-type) and None."""
        if key not in entry:
            self.error("missing-field", f"{where}: no '{key}'", image_id, ann_id)
            return None
        value = entry[key]
        ok = is_int(value) if kind is int else isinstance(value, kind)
        if not ok or (kind is str and not value):
            need = {int: "an integer", str: "a non-empty string"}[kind]
            self.error("wrong-type", f"{where}: '{key}' is {value!r}, needs {need}", image_id, ann_id)
            return None
        return value

    def _positive(self, entry: dict[str, Any], key: str, where: str, image_id: int) -> int | None:
        value = self._field(entry, key, where, image_id, int)
        if value is not None and value <= 0:
            self.error("bad-value", f"{where}: '{key}' is {value}, needs a positive number of pixels", image_id)
            return None
        return value

    # -------------------------------------------------------------------------------------- categories

    def _category(self, index: int, entry: Any) -> None:
        if not isinstance(entry, dict):
            self.error("wrong-type", f"categories[{index}] is {kind_of(entry)}, needs an object")
            return
        cat_id = self._entry_id(entry, f"categories[{index}]")
        if cat_id is None:
            return
        where = f"category {cat_id}"
        if cat_id in self.category_ids:
            self.error("duplicate-id", f"{where}: id used again by categories[{index}]")
            return
        self.category_ids.add(cat_id)
        name = self._field(entry, "name", where, None, str)
        if name is not None and len(name) > (limit := text_limits()["class name"]).max_chars:
            self.error("name-too-long", f"{where}: name {name[:40]!r}… is {len(name)} characters; at most "
                                        f"{limit.max_chars} fit ({limit.column})")
        if name is not None:
            same = [other for other, known in self.category_names.items() if known == name]
            if same:
                self.warning("duplicate-category-name",
                             f"{where}: name {name!r} is also the name of category {same[0]}")
            self.category_names[cat_id] = name

    # ------------------------------------------------------------------------------------- annotations

    def _annotation(self, index: int, ann: Any, seen: dict[int, int]) -> None:
        if not isinstance(ann, dict):
            self.error("wrong-type", f"annotations[{index}] is {kind_of(ann)}, needs an object")
            return
        image_id = ann.get("image_id") if is_int(ann.get("image_id")) else None
        on = f" (image {image_id})" if image_id is not None else ""
        # an annotation without a usable id cannot be skipped alone: the error names its image
        ann_id = self._entry_id(ann, f"annotations[{index}]{on}", image_id)
        if ann_id is None:
            return
        where = f"annotation {ann_id}" + (f" (image {image_id})" if image_id is not None else "")
        if ann_id in seen:
            self.error("duplicate-id", f"{where}: id used by annotations[{seen[ann_id]}] and again by "
                       f"annotations[{index}]", image_id, ann_id)
            return
        seen[ann_id] = index
        image = self._annotation_refs(ann, where, image_id, ann_id)
        size = image.size if image is not None else None
        iscrowd = ann.get("iscrowd", 0)
        if iscrowd not in (0, 1) or isinstance(iscrowd, float):
            self.error("bad-value", f"{where}: iscrowd is {iscrowd!r}, needs 0 or 1", image_id, ann_id)
        elif iscrowd == 1:
            self.crowd.append(f"{ann_id} (image {image_id})")
        if "area" in ann and (not is_number(ann["area"]) or ann["area"] < 0):
            self.error("bad-value", f"{where}: area is {ann['area']!r}, needs a number ≥ 0", image_id, ann_id)
        has_bbox = "bbox" in ann
        findings = [bbox_problem(ann["bbox"], size)] if has_bbox else []
        if "segmentation" not in ann:
            self._box_only(has_bbox, where, image_id, ann_id)
            empty = False
        else:
            problems, empty = segmentation_problems(ann["segmentation"], size)
            findings += problems
        for severity, code, words in filter(None, findings):
            report = self.error if severity == "error" else self.warning
            report(code, f"{where}: {words}", image_id, ann_id)
        if empty:
            words = f"{where}: segmentation covers no pixels"
            if self.task in MASK_TASKS or not has_bbox:
                why = f"task {self.task} needs its mask" if has_bbox else "and there is no bbox either"
                self.error("empty-segmentation", f"{words} ({why})", image_id, ann_id)
            elif self.task not in BOX_TASKS:  # detection / classification never look at the mask
                self.warning("empty-segmentation", f"{words}; only its bbox is usable", image_id, ann_id)

    def _annotation_refs(self, ann: dict[str, Any], where: str, image_id: int | None, ann_id: int) -> _Image | None:
        """Check image_id and category_id; count the annotation for its image and category."""
        image = None
        if self._field(ann, "image_id", where, None, int, ann_id) is not None and image_id is not None:
            image = self.images.get(image_id)
            if image is None:
                self.error("unknown-image", f"{where}: image {image_id} is not in 'images'", image_id, ann_id)
            else:
                self.anns_per_image[image_id] += 1
        cat_id = self._field(ann, "category_id", where, image_id, int, ann_id)
        if cat_id is not None:
            if cat_id not in self.category_ids:
                known = examples(sorted(self.category_ids), 10) or "none"
                self.error("unknown-category", f"{where}: category {cat_id} is not in 'categories' "
                           f"(known: {known})", image_id, ann_id)
            else:
                self.anns_per_category[cat_id] += 1
        return image

    def _box_only(self, has_bbox: bool, where: str, image_id: int | None, ann_id: int) -> None:
        if not has_bbox:
            self.error("no-geometry", f"{where}: neither 'segmentation' nor 'bbox'", image_id, ann_id)
        elif self.task in MASK_TASKS:
            self.error("no-segmentation", f"{where}: no 'segmentation' (task {self.task} needs masks)",
                       image_id, ann_id)
        elif self.task not in BOX_TASKS:
            self.box_only.append(ann_id)  # task unknown: one aggregated warning at the end

    # ---------------------------------------------------------------------------------- whole dataset

    def _dataset_level(self, sections: dict[str, list[Any]]) -> None:
        for image_id, count in self.anns_per_image.items():
            too_many = image_problem(count, self.caps)
            if too_many is not None:
                self.error("image-too-many-annotations", f"image {image_id}: {too_many}", image_id=image_id)
        if not sections["images"]:
            self.error("empty-dataset", "no images: 'images' is empty")
        elif not sections["annotations"]:
            self.error("no-annotations", "no annotations: 'annotations' is empty, nothing to learn from")
        unused = sorted(self.category_ids - set(self.anns_per_category)) if sections["annotations"] else []
        for cat_id in unused:
            name = self.category_names.get(cat_id, "?")
            self.warning("unused-category", f"category {cat_id} ({name}) has no annotations")
        if self.crowd:
            self.warning("crowd-annotations", f"{len(self.crowd)} crowd annotations (iscrowd=1), used as "
                         f"ignore regions, not as objects: {examples(self.crowd)}")
        empty = [i for i in self.images if self.anns_per_image[i] == 0]
        if empty and sections["annotations"]:
            self.warning("images-without-annotations", f"{len(empty)} of {len(self.images)} images have no "
                         f"annotations (pure background): images {examples(empty)}")
        if self.box_only:
            self.warning("no-segmentation", f"{len(self.box_only)} annotations have a bbox but no "
                         f"'segmentation' (fine for detection, not for masks): {examples(self.box_only)}")

    def _image_files(self, decode: bool) -> None:
        entries = [(i, im) for i, im in self.images.items() if im.file_name is not None]
        self._duplicate_files(entries)
        paths = [self.images_dir / im.file_name for _, im in entries if im.file_name is not None]
        for (image_id, image), path, found in zip(entries, paths, inspect_images(paths, decode), strict=False):
            where = f"image {image_id} ({image.file_name})"
            if found.problem is not None:
                code, words = found.problem
                self.report.error(code, f"{where}: {words}", file=path, image_id=image_id)
            elif image.size is not None and found.size is not None and found.size != image.size:
                (h, w), (jh, jw) = found.size, image.size
                hint = (" (the JSON matches the file before its EXIF rotation, which segpipe applies)"
                        if found.stored_size == image.size else "")
                self.report.error("image-size-mismatch", f"{where}: file is {w}×{h} (w×h), the JSON says "
                                  f"{jw}×{jh}{hint}", file=path, image_id=image_id)

    def _duplicate_files(self, entries: list[tuple[int, _Image]]) -> None:
        users: defaultdict[str, list[int]] = defaultdict(list)
        for image_id, image in entries:
            users[str(image.file_name)].append(image_id)
        for name, ids in users.items():
            if len(ids) > 1:
                self.warning("duplicate-file-name", f"images {examples(ids)} all use the file {name}")
