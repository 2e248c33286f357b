"""COCO instances JSON + image folder → Samples, for every task kind (pycocotools holds the index).

What each task gets from one COCO image (ids are COCO's; labels come from the `CategoryMap`):

- ``instance``: one mask per non-crowd annotation, boxes computed from the masks (so they agree
  after rasterisation), labels 1..K. Annotations whose mask rasterises to nothing are dropped and
  listed in ``meta["empty_annotation_ids"]``.
- ``detection``: boxes from ``bbox`` (xywh → xyxy, clipped to the image), labels; no masks. Crowd
  annotations and boxes with no area left after clipping are left out (the latter listed as above).
- ``semantic``: one label map, larger instances drawn first; crowd regions → ``ignore_index``.
- ``binary``: 1 where any instance of the chosen categories is, crowd regions of them → ignore.
- ``classification``, ``classification_source="crops"``: one sample per non-crowd annotation with a
  bbox: the box, padded on each side by ``crop_padding`` × its width/height and clipped to the image.
  ``image_id`` is the COCO image id; ``meta["annotation_id"]`` names the annotation.
- ``classification``, ``classification_source="image"``: image-level labels, i.e. annotations with a
  ``category_id`` but neither bbox nor segmentation. Images without one are not samples; an image
  with two different ones is a DataError.

Annotations of categories outside the chosen ones are ignored (background); annotations without
geometry are ignored by the geometric tasks. Images without annotations are valid samples.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from segpipe.data.categories import CategoryMap
from segpipe.data.images import read_image
from segpipe.data.sample import Sample
from segpipe.data.targets import (
    annotation_error,
    instances_to_binary,
    instances_to_label_map,
    masks_to_boxes,
    rle_to_mask,
    segmentation_to_rle,
    xywh_to_xyxy,
)
from segpipe.errors import ConfigError, DataError
from segpipe.paths import active_roots, check_read, confine_name
from segpipe.task_kinds import traits
from segpipe.vocabulary import IGNORE_INDEX

_REQUIRED_KEYS = {"images": ("id", "file_name"), "annotations": ("id", "image_id", "category_id"),
                  "categories": ("id", "name")}


def load_coco(path: str | Path) -> COCO:
    """Read a COCO instances JSON into a pycocotools `COCO` index, quietly (no prints).

    Raises DataError naming the file when it is unreadable, not JSON, or an entry lacks a key.
    The file is confined to the active roots (`segpipe.paths.check_read`).
    """
    from segpipe.data.annotation_caps import AnnotationCaps, dataset_problem, precount

    path = check_read(path, what="annotations")
    caps = AnnotationCaps.current()
    try:
        text = path.read_text(encoding="utf-8")
        too_many = dataset_problem(precount(text), caps, counted_raw=True)
        if too_many is not None:
            raise DataError(f"{path}: {too_many}")
        dataset = json.loads(text)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: cannot read annotations (not UTF-8: {e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read annotations ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    if not isinstance(dataset, dict):
        raise DataError(f"{path}: a COCO file is a JSON object, got {type(dataset).__name__}")
    for section, keys in _REQUIRED_KEYS.items():
        entries = dataset.get(section, [])
        if not isinstance(entries, list):
            raise DataError(f"{path}: '{section}' must be a list")
        for k, entry in enumerate(entries):
            missing = [key for key in keys if not isinstance(entry, dict) or key not in entry]
            if missing:
                raise DataError(f"{path}: {section}[{k}] lacks {', '.join(missing)}")
    too_many = dataset_problem(len(dataset.get("annotations") or []), caps)
    if too_many is not None:
        raise DataError(f"{path}: {too_many}")
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco


def build_category_map(coco: COCO, task: str, categories: Sequence[str | int] | None = None) -> CategoryMap:
    """The dataset's `CategoryMap`: chosen category ids sorted ascending.

    ``categories`` picks by name or id (None = all); an unknown one is a ConfigError listing the known
    names. Offset 0 for classification, 1 otherwise. For ``binary`` the chosen categories merge into
    label 1: the map holds one entry (``ids[0]`` = smallest chosen id, name = its name or
    "foreground" when several) and ``foreground_ids`` records them all.
    """
    cats = sorted(coco.cats.values(), key=lambda c: c["id"])
    if not cats:
        raise DataError("the annotations define no categories")
    chosen = [c["id"] for c in cats] if categories is None else _resolve(cats, categories)
    names = {c["id"]: str(c["name"]) for c in cats}
    kind = traits(task)
    if kind.single_foreground:
        name = names[chosen[0]] if len(chosen) == 1 else "foreground"
        return CategoryMap((chosen[0],), (name,), offset=1, foreground_ids=tuple(chosen))
    return CategoryMap(tuple(chosen), tuple(names[i] for i in chosen), offset=kind.label_offset)


def _resolve(cats: list[dict[str, Any]], wanted: Sequence[str | int]) -> list[int]:
    by_name: dict[str, list[int]] = {}
    for c in cats:
        by_name.setdefault(str(c["name"]), []).append(c["id"])
    ids = {c["id"] for c in cats}
    known = ", ".join(f"{c['name']} ({c['id']})" for c in cats)
    chosen: set[int] = set()
    for item in wanted:
        if isinstance(item, str) and item in by_name:
            if len(by_name[item]) > 1:
                raise ConfigError(f"category name {item!r} is used by ids {by_name[item]}; choose by id")
            chosen.add(by_name[item][0])
        elif isinstance(item, int) and item in ids:
            chosen.add(item)
        elif isinstance(item, str) and item.isdigit() and int(item) in ids:
            chosen.add(int(item))
        else:
            raise ConfigError(f"unknown category {item!r}; known: {known}")
    if not chosen:
        raise ConfigError(f"no categories chosen; known: {known}")
    return sorted(chosen)


class _Item(NamedTuple):
    image_id: int
    annotation_id: int | None = None  # classification crops
    category_id: int | None = None  # classification from image-level labels


class CocoSource:
    """Samples of one COCO split. ``exclude_images`` / ``exclude_annotations`` (ids) drop what
    validation flagged (``data.skip_invalid``). Content errors (bad segmentation, wrong image size)
    are raised when the sample is loaded, naming the file, image id and annotation id."""

    def __init__(
        self,
        images_dir: str | Path,
        annotations: str | Path,
        task: str,
        *,
        categories: Sequence[str | int] | None = None,
        classification_source: str = "crops",
        crop_padding: float = 0.1,
        ignore_index: int = IGNORE_INDEX,
        exclude_images: Collection[int] = (),
        exclude_annotations: Collection[int] = (),
    ) -> None:
        traits(task)  # ConfigError for an unknown task
        if classification_source not in ("crops", "image"):
            raise ConfigError(f"classification_source {classification_source!r}; known: crops, image")
        self.images_dir = Path(images_dir)
        self.annotations_path = Path(annotations)
        self.task = task
        self.crop_padding = float(crop_padding)
        self.ignore_index = int(ignore_index)
        self.coco = load_coco(annotations)
        self._roots = active_roots()  # captured: loader worker processes read with the same confinement
        self.category_map = build_category_map(self.coco, task, categories)
        self._chosen = set(self.category_map.foreground_ids or self.category_map.ids)
        self._skip_images = frozenset(exclude_images)
        self._skip_anns = frozenset(exclude_annotations)
        image_ids = sorted(i for i in self.coco.imgs if i not in self._skip_images)
        if traits(task).target == "class_id":
            index = self._crop_items if classification_source == "crops" else self._image_label_items
            self._items = [item for i in image_ids for item in index(i)]
        else:
            self._items = [_Item(i) for i in image_ids]
        builders: dict[str, Callable[[_Item, np.ndarray, dict[str, Any]], Sample]] = {
            "instance": self._instance, "detection": self._detection, "semantic": self._semantic,
            "binary": self._binary, "classification": self._classification,
        }
        self._build = builders[task]

    # ------------------------------------------------------------------------------------- public API

    def __len__(self) -> int:
        return len(self._items)

    @property
    def image_ids(self) -> list[int]:
        """COCO image id per sample (crops of one image repeat its id)."""
        return [item.image_id for item in self._items]

    def image_path(self, index: int) -> Path:
        image_id = self._items[index].image_id
        return confine_name(self.coco.imgs[image_id]["file_name"], self.images_dir, self._roots,
                            what=f"image {image_id}: file_name")

    def load(self, index: int) -> Sample:
        item = self._items[index]
        info = self.coco.imgs[item.image_id]
        try:
            path = self.image_path(index)
            image = read_image(path, roots=self._roots)
        except DataError as e:
            raise DataError(f"image {item.image_id}: {e}") from None
        h, w = image.shape[:2]
        expected = (info.get("height", h), info.get("width", w))
        if expected != (h, w):
            hint = " (width and height swapped: an EXIF orientation tag may rotate the file)" if expected == (w, h) else ""
            raise DataError(
                f"{path} (image {item.image_id}): file is {h}×{w} pixels, the annotations say "
                f"{expected[0]}×{expected[1]}{hint}"
            )
        meta: dict[str, Any] = {"file_name": info["file_name"], "orig_size": (h, w)}
        return self._build(item, image, meta)

    # ------------------------------------------------------------------------------------ per task

    def _instance(self, item: _Item, image: np.ndarray, meta: dict[str, Any]) -> Sample:
        anns = [a for a in self._geometric(item.image_id, need_mask=True) if not a.get("iscrowd")]
        masks = self._masks(anns, *image.shape[:2])
        keep = np.asarray(masks.any(axis=(1, 2)))
        meta["annotation_ids"] = [a["id"] for a, k in zip(anns, keep, strict=False) if k]
        meta["empty_annotation_ids"] = [a["id"] for a, k in zip(anns, keep, strict=False) if not k]
        masks = masks[keep] if not keep.all() else masks
        labels = np.array([self.category_map.to_label(a["category_id"]) for a, k in zip(anns, keep, strict=False) if k], np.int64)
        return Sample(image, item.image_id, masks=masks, boxes=masks_to_boxes(masks), labels=labels, meta=meta)

    def _detection(self, item: _Item, image: np.ndarray, meta: dict[str, Any]) -> Sample:
        h, w = image.shape[:2]
        anns = [a for a in self._geometric(item.image_id, need_mask=False) if not a.get("iscrowd")]
        boxes = xywh_to_xyxy([self._bbox(a, h, w) for a in anns])
        np.clip(boxes, 0, [w, h, w, h], out=boxes)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        meta["annotation_ids"] = [a["id"] for a, k in zip(anns, keep, strict=False) if k]
        meta["empty_annotation_ids"] = [a["id"] for a, k in zip(anns, keep, strict=False) if not k]
        labels = np.array([self.category_map.to_label(a["category_id"]) for a, k in zip(anns, keep, strict=False) if k], np.int64)
        return Sample(image, item.image_id, boxes=boxes[keep], labels=labels, meta=meta)

    def _semantic(self, item: _Item, image: np.ndarray, meta: dict[str, Any]) -> Sample:
        anns = self._geometric(item.image_id, need_mask=True)
        masks = self._masks(anns, *image.shape[:2])
        labels = [self.category_map.to_label(a["category_id"]) for a in anns]
        crowd = [bool(a.get("iscrowd")) for a in anns]
        label_map = instances_to_label_map(masks, labels, crowd, self.ignore_index)
        return Sample(image, item.image_id, label_map=label_map, meta=meta)

    def _binary(self, item: _Item, image: np.ndarray, meta: dict[str, Any]) -> Sample:
        anns = self._geometric(item.image_id, need_mask=True)
        masks = self._masks(anns, *image.shape[:2])
        label_map = instances_to_binary(masks, [bool(a.get("iscrowd")) for a in anns], self.ignore_index)
        return Sample(image, item.image_id, label_map=label_map, meta=meta)

    def _classification(self, item: _Item, image: np.ndarray, meta: dict[str, Any]) -> Sample:
        if item.annotation_id is None:  # image-level label
            assert item.category_id is not None
            return Sample(image, item.image_id, class_id=self.category_map.to_label(item.category_id), meta=meta)
        ann = self.coco.anns[item.annotation_id]
        h, w = image.shape[:2]
        x, y, bw, bh = self._bbox(ann, h, w)
        if bw <= 0 or bh <= 0:
            raise annotation_error(ann["id"], item.image_id, f"bbox {ann['bbox']} has no area to crop")
        px, py = self.crop_padding * bw, self.crop_padding * bh
        x0, x1 = _span(x - px, x + bw + px, w)
        y0, y1 = _span(y - py, y + bh + py, h)
        meta.update(annotation_id=ann["id"], crop_box=(x0, y0, x1, y1))
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])  # a copy lets the full image be freed
        return Sample(crop, item.image_id, class_id=self.category_map.to_label(ann["category_id"]), meta=meta)

    # --------------------------------------------------------------------------------------- helpers

    def _annotations(self, image_id: int) -> list[dict[str, Any]]:
        """The image's annotations of chosen categories, minus excluded ones."""
        out = []
        for ann in self.coco.imgToAnns.get(image_id, ()):
            if ann["id"] in self._skip_anns:
                continue
            if ann["category_id"] not in self.coco.cats:
                raise annotation_error(ann["id"], image_id, f"category_id {ann['category_id']} is not a category")
            if ann["category_id"] in self._chosen:
                out.append(ann)
        return out

    def _geometric(self, image_id: int, need_mask: bool) -> list[dict[str, Any]]:
        """Annotations with geometry (image-level labels left out); `need_mask`: a bbox alone is an error."""
        out = []
        for ann in self._annotations(image_id):
            if _is_image_level(ann):
                continue
            if need_mask and not ann.get("segmentation"):
                problem = f"has no segmentation; task {self.task} needs masks (detection needs only boxes)"
                raise annotation_error(ann["id"], image_id, problem)
            out.append(ann)
        return out

    def _masks(self, anns: list[dict[str, Any]], h: int, w: int) -> np.ndarray:
        """N×H×W uint8 masks of the annotations' segmentations."""
        masks = np.empty((len(anns), h, w), dtype=np.uint8)
        for k, ann in enumerate(anns):
            rle = segmentation_to_rle(ann["segmentation"], h, w, annotation_id=ann["id"], image_id=ann["image_id"])
            masks[k] = rle_to_mask(rle, annotation_id=ann["id"], image_id=ann["image_id"])
        return masks

    def _bbox(self, ann: dict[str, Any], h: int, w: int) -> list[float]:
        """The annotation's xywh box; from its segmentation when it has no ``bbox``."""
        box = ann.get("bbox")
        if box is None:
            rle = segmentation_to_rle(ann["segmentation"], h, w, annotation_id=ann["id"], image_id=ann["image_id"])
            return [float(v) for v in mask_utils.toBbox(rle)]
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise annotation_error(ann["id"], ann["image_id"], f"bbox must be [x, y, width, height], got {box!r}")
        return [float(v) for v in box]

    def _crop_items(self, image_id: int) -> list[_Item]:
        return [
            _Item(image_id, ann["id"])
            for ann in self._annotations(image_id)
            if not ann.get("iscrowd") and ann.get("bbox") is not None
        ]

    def _image_label_items(self, image_id: int) -> list[_Item]:
        found = sorted({a["category_id"] for a in self._annotations(image_id) if _is_image_level(a)})
        if len(found) > 1:
            names = ", ".join(f"{self.coco.cats[c]['name']} ({c})" for c in found)
            raise DataError(f"image {image_id}: has image-level labels of several categories: {names}")
        return [_Item(image_id, None, found[0])] if found else []


def _is_image_level(ann: dict[str, Any]) -> bool:
    return not ann.get("bbox") and not ann.get("segmentation")


def _span(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Integer pixel range [a, b) covering [lo, hi], clipped to [0, size), at least one pixel wide."""
    a = min(max(math.floor(lo), 0), size - 1)
    b = max(min(math.ceil(hi), size), a + 1)
    return a, b
