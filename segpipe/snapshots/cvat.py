"""CVAT's export archives as snapshot sources, read as CVAT writes them (through datumaro, whose
exporters CVAT uses): "COCO 1.0", "Segmentation mask 1.1" and "CVAT for images 1.1".

Only archives exported with their images ("Save images" on) can become snapshots: a snapshot holds
the bytes it was trained on. Every object becomes one annotation; CVAT's brush masks, which its COCO
export marks ``iscrowd=1``, are objects like any other.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from segpipe.errors import DataError
from segpipe.masks.encode import voc_palette
from segpipe.snapshots.archive import Archive, decode_png, image_size
from segpipe.snapshots.draft import Draft, DraftAnnotation, DraftImage

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_coco(archive: Archive) -> Draft:
    """CVAT "COCO 1.0": ``annotations/instances_<subset>.json`` and ``images/[<subset>/]<file>``."""
    files = [n for n in archive.names if re.fullmatch(r"annotations/instances_[^/]+\.json", n)]
    if not files:
        raise DataError(f"{archive.path}: no annotations/instances_<subset>.json: not a CVAT \"COCO 1.0\" export")
    draft = Draft(categories=[])
    for name in files:
        subset = name.removeprefix("annotations/instances_").removesuffix(".json")
        try:
            coco = json.loads(archive.read(name))
        except json.JSONDecodeError as e:
            raise DataError(f"{archive.path}: {name} is not JSON ({e})") from None
        categories = {c["id"]: c["name"] for c in coco.get("categories", [])}
        draft.categories += [c for c in categories.values() if c not in draft.categories]
        files_by_id = {}
        for image in coco.get("images", []):
            member = _coco_image_member(archive, subset, image["file_name"])
            files_by_id[image["id"]] = _add_image(draft, archive, member, image["file_name"])
        for ann in coco.get("annotations", []):
            where = f"{archive.path}: {name} annotation {ann.get('id')} (image {ann.get('image_id')})"
            if ann.get("image_id") not in files_by_id or ann.get("category_id") not in categories:
                raise DataError(f"{where}: refers to an image or category the file does not list")
            draft.annotations.append(_coco_annotation(ann, files_by_id[ann["image_id"]],
                                                      categories[ann["category_id"]], where))
    return draft


def read_masks(archive: Archive) -> Draft:
    """CVAT "Segmentation mask 1.1": ``labelmap.txt``, ``SegmentationObject/`` (one colour per object),
    ``SegmentationClass/`` (one colour per label) and ``JPEGImages/``."""
    if not archive.has("labelmap.txt"):
        raise DataError(f"{archive.path}: no labelmap.txt: not a CVAT \"Segmentation mask 1.1\" export")
    colours = _labelmap(archive.read("labelmap.txt").decode("utf-8"), str(archive.path))
    draft = Draft(categories=[name for name in colours if name != "background"])
    by_colour = {colour: name for name, colour in colours.items()}
    images = {PurePosixPath(n).stem: n for n in archive.names
              if n.startswith("JPEGImages/") and n.lower().endswith(IMAGE_SUFFIXES)}
    for member in (n for n in archive.names if n.startswith("SegmentationObject/") and n.endswith(".png")):
        stem = member.removeprefix("SegmentationObject/").removesuffix(".png")
        if stem not in images:
            raise DataError(f"{archive.path}: no image for item {stem!r} under JPEGImages/: export from CVAT with "
                            "\"Save images\" on")
        file_name = _add_image(draft, archive, images[stem], images[stem].removeprefix("JPEGImages/"))
        objects = decode_png(archive.read(member), f"{archive.path}: {member}", "RGB")
        class_member = f"SegmentationClass/{stem}.png"
        classes = decode_png(archive.read(class_member), f"{archive.path}: {class_member}", "RGB")
        if classes.shape != objects.shape:
            raise DataError(f"{archive.path}: {class_member} is {classes.shape[1]}×{classes.shape[0]}, its object "
                            f"map {objects.shape[1]}×{objects.shape[0]}")
        for colour in _colours(objects):
            if colour in ((0, 0, 0), VOC_VOID):
                continue
            mask = np.all(objects == colour, axis=-1)
            label_colour = Counter(map(tuple, classes[mask].tolist())).most_common(1)[0][0]
            label = by_colour.get(label_colour)
            if label is None or label == "background":
                raise DataError(f"{archive.path}: {member}: object colour {colour} lies on class colour "
                                f"{label_colour}, which labelmap.txt does not name as a label")
            draft.add_mask(file_name, label, mask)
    return draft


def read_cvat_images(archive: Archive) -> Draft:
    """CVAT for images 1.1: one XML file (``annotations.xml``) of ``<image>`` elements holding boxes,
    polygons and masks, and ``images/<name>``."""
    xml_files = [n for n in archive.names if n.endswith(".xml") and "/" not in n]
    if len(xml_files) != 1:
        raise DataError(f"{archive.path}: needs exactly one top-level XML file for \"CVAT for images 1.1\", "
                        f"found {xml_files}")
    text = archive.read(xml_files[0])
    if b"<!DOCTYPE" in text.upper() or b"<!ENTITY" in text.upper():  # CVAT writes neither
        raise DataError(f"{archive.path}: {xml_files[0]}: DOCTYPE and ENTITY declarations are not accepted")
    try:
        root = ElementTree.fromstring(text)  # noqa: S314 - no DOCTYPE, so no entity can expand
    except ElementTree.ParseError as e:
        raise DataError(f"{archive.path}: {xml_files[0]} is not XML ({e})") from None
    draft = Draft(categories=[label.findtext("name", "") for label in root.iter("label")])
    for image in root.iter("image"):
        name = image.get("name", "")
        file_name = _add_image(draft, archive, f"images/{name}", name)
        width, height = int(image.get("width", 0)), int(image.get("height", 0))
        for shape in image:
            where = f"{archive.path}: image {name!r} {shape.tag} {shape.get('label')!r}"
            label = shape.get("label", "")
            if shape.tag == "box":
                x1, y1, x2, y2 = (float(shape.get(k, 0)) for k in ("xtl", "ytl", "xbr", "ybr"))
                draft.annotations.append(DraftAnnotation(file_name, label, [x1, y1, x2 - x1, y2 - y1]))
            elif shape.tag == "polygon":
                points = [float(v) for pair in shape.get("points", "").split(";") for v in pair.split(",")]
                draft.add_polygon(file_name, label, points, height, width, where)
            elif shape.tag == "mask":
                draft.add_mask(file_name, label, _cvat_mask(shape, height, width, where))
    return draft


# -- helpers ---------------------------------------------------------------------------------------------


VOC_VOID = (224, 224, 192)  # VOC's "void" border colour: no object


def _labelmap(text: str, where: str) -> dict[str, tuple[int, int, int]]:
    """``name:r,g,b:parts:actions`` lines → name → colour (an empty colour takes VOC's for its position)."""
    palette = voc_palette()
    colours: dict[str, tuple[int, int, int]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        colour_text = rest.split(":")[0]
        if colour_text:
            try:
                r, g, b = (int(v) for v in colour_text.split(","))
            except ValueError:
                raise DataError(f"{where}: labelmap.txt line {line!r}: colour is not r,g,b") from None
            colours[name] = (r, g, b)
        else:
            r, g, b = (int(v) for v in palette[len(colours)])
            colours[name] = (r, g, b)
    return colours


def _colours(image: np.ndarray) -> list[tuple[int, int, int]]:
    flat = image.reshape(-1, 3)
    return [tuple(int(v) for v in c) for c in np.unique(flat, axis=0)]  # type: ignore[misc]


def _coco_image_member(archive: Archive, subset: str, file_name: str) -> str:
    for member in (f"images/{subset}/{file_name}", f"images/{file_name}"):
        if archive.has(member):
            return member
    raise DataError(f"{archive.path}: no image {file_name!r} under images/: export from CVAT with \"Save images\" on")


def _add_image(draft: Draft, archive: Archive, member: str, file_name: str) -> str:
    if not archive.has(member):
        raise DataError(f"{archive.path}: no image {member!r}: export from CVAT with \"Save images\" on")
    name = PurePosixPath(file_name).as_posix()
    if name in draft.images:
        return name
    data = archive.read(member)
    width, height = image_size(data, f"{archive.path}: {member}")
    draft.images[name] = DraftImage(name, data, width, height)
    return name


def _coco_annotation(ann: dict[str, Any], file_name: str, category: str, where: str) -> DraftAnnotation:
    bbox = [float(v) for v in ann.get("bbox", [])]
    seg = ann.get("segmentation")
    if isinstance(seg, dict):  # RLE, uncompressed (CVAT's brush masks) or compressed
        height, width = seg.get("size", [0, 0])
        rle = mask_utils.frPyObjects(seg, height, width) if isinstance(seg.get("counts"), list) else seg
        mask = mask_utils.decode(rle).astype(bool)
        draft = Draft(categories=[category])
        draft.add_mask(file_name, category, mask)
        if not draft.annotations:
            raise DataError(f"{where}: its mask covers no pixel")
        return draft.annotations[0]
    if isinstance(seg, list) and seg:
        return DraftAnnotation(file_name, category, bbox, [[float(v) for v in poly] for poly in seg],
                               float(ann.get("area", 0.0)) or None)
    if len(bbox) != 4:
        raise DataError(f"{where}: neither a segmentation nor a bbox [x, y, w, h]")
    return DraftAnnotation(file_name, category, bbox)


def _cvat_mask(shape: ElementTree.Element, height: int, width: int, where: str) -> np.ndarray:
    """CVAT's mask element: run lengths (zeros first) over its box's pixels, row by row."""
    left, top = int(float(shape.get("left", 0))), int(float(shape.get("top", 0)))
    box_w, box_h = int(float(shape.get("width", 0))), int(float(shape.get("height", 0)))
    runs = [int(v) for v in shape.get("rle", "").split(",") if v.strip()]
    if sum(runs) != box_w * box_h or left + box_w > width or top + box_h > height:
        raise DataError(f"{where}: mask runs cover {sum(runs)} pixels, its {box_w}×{box_h} box at ({left}, {top}) "
                        f"needs {box_w * box_h} inside the {width}×{height} image")
    values = np.repeat(np.arange(len(runs)) % 2, runs).astype(bool)
    mask = np.zeros((height, width), dtype=bool)
    mask[top:top + box_h, left:left + box_w] = values.reshape(box_h, box_w)
    return mask
