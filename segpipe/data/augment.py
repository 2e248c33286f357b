"""Paired augmentation: one albumentations call moves image, masks, boxes and labels together.

``build_transform(augment, task, image_size, train)`` gives a picklable ``PairedTransform`` that maps a
``Sample`` to a ``Sample`` (same contract, see ``segpipe.data.sample``). albumentations is the only
augmentation layer; segpipe only chooses the transforms (a named preset or the config's ``A.to_dict``
pipeline) and routes the Sample's fields to albumentations' targets by keyword:

- image only for ``classification``;
- ``mask=label_map`` whenever the sample has a label map (``semantic``, ``binary``);
- ``masks=`` when the sample has instance masks (``instance``); boxes are then *recomputed* from the
  transformed masks (a rotated box is not the box of the rotated object) and instances whose mask
  vanished are dropped from masks, boxes, labels and ``meta["annotation_ids"]`` alike;
- ``bboxes=`` (pascal_voc = segpipe's xyxy pixels) when the sample has boxes but no masks
  (``detection``); boxes thinner than half a pixel after the transform (gone from view) are dropped with their labels.

Output sizes (``S = image_size``):

- training, every task: the preset ends at exactly S×S. classification/semantic/binary crop and
  stretch (RandomResizedCrop), so batches stack; instance/detection keep the aspect ratio (resize the
  longest side to S, pad to S×S, then scale/translate jitter on that canvas, large-scale-jitter style),
  because detectors learn object shapes and a stretched box is a wrong box.
- custom pipelines (``augment.pipeline``): used as given; for the stacking tasks (classification,
  semantic, binary) a final LongestMaxSize(S) + PadIfNeeded(S, S) is appended, a no-op resize and a
  zero-width pad when the pipeline already ends at S×S. instance/detection keep whatever size the
  pipeline produces (their collate keeps lists).
- evaluation (``train=False``): deterministic. classification: Resize(S, S). Every other task:
  LongestMaxSize(S) + PadIfNeeded(S, S) padded at the bottom/right only, so a prediction maps back by
  cropping ``[:h', :w']`` (``letterbox_size``) and resizing to the original size.

Fills: images pad with 0; label maps pad with ``ignore_index`` for semantic/binary (no loss, no metric on
padding) and instance masks with 0. Masks always use nearest interpolation; custom pipelines that ask
for anything else are refused.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import albumentations as A
import cv2
import numpy as np
from albumentations.core.type_definitions import Targets

from segpipe.config import AugmentConfig
from segpipe.data.sample import Sample, empty_boxes, empty_masks
from segpipe.data.targets import masks_to_boxes
from segpipe.errors import ConfigError, DataError
from segpipe.registry import Registry
from segpipe.task_kinds import TRAITS, traits
from segpipe.vocabulary import IGNORE_INDEX

PresetBuilder = Callable[[str, int, int], list[A.BasicTransform]]
PRESETS: Registry[PresetBuilder] = Registry("augmentation preset")


NEAREST = cv2.INTER_NEAREST
_NEAREST_FLAGS = (cv2.INTER_NEAREST, cv2.INTER_NEAREST_EXACT)
_KEEP_UINT8 = "the model normalises; transforms must keep images H×W×3 uint8"
_FORBIDDEN = {
    "Normalize": _KEEP_UINT8,
    "ToFloat": _KEEP_UINT8,
    "ToTensorV2": _KEEP_UINT8,
    "ToTensor3D": _KEEP_UINT8,
    "Lambda": "configs are data: a Lambda would run code",
}


# ------------------------------------------------------------------------------------------- the call


class PairedTransform:
    """A Sample → Sample transform around one ``A.Compose``. Picklable (DataLoader workers).

    The returned Sample is new and the input is not modified; arrays come back C-contiguous
    (``torch.from_numpy`` needs that) with the Sample contract's dtypes. ``meta`` is the input's dict,
    or a shallow copy with filtered ``annotation_ids`` when instances were dropped.
    """

    def __init__(self, compose: A.Compose, task: str, image_size: int, train: bool) -> None:
        self.compose = compose
        self.task = task
        self.image_size = image_size
        self.train = train

    def set_random_seed(self, seed: int | None) -> None:
        """Seed albumentations' generators (Compose and every transform in it). A DataLoader's
        ``worker_init_fn`` calls this: forked workers otherwise share one generator state."""
        self.compose.set_random_seed(seed)

    def __call__(self, sample: Sample) -> Sample:
        n = len(sample.labels)
        use_masks = len(sample.masks) > 0
        use_boxes = not use_masks and traits(self.task).instances
        data: dict[str, Any] = {"image": sample.image}
        if sample.label_map is not None:
            data["mask"] = sample.label_map
        if use_masks:
            data["masks"] = sample.masks
        if traits(self.task).instances:
            # The Compose has bbox_params for these tasks, which needs both keys on every call. The
            # "labels" we pass are positions, so one index selects labels, masks and annotation ids.
            data["bboxes"] = sample.boxes if use_boxes else empty_boxes()
            data["labels"] = np.arange(n if use_boxes else 0)
        try:
            out = self.compose(**data)
        except ValueError as e:  # shape mismatches between image and masks, invalid boxes, ...
            raise DataError(f"image {sample.image_id}: augmentation failed: {e}") from e

        image = np.ascontiguousarray(out["image"])
        h, w = image.shape[:2]
        label_map = np.ascontiguousarray(out["mask"]) if "mask" in out else None
        masks, boxes, labels, meta = empty_masks(h, w), sample.boxes, sample.labels, sample.meta
        if use_masks:
            masks = np.ascontiguousarray(out["masks"])
            boxes = masks_to_boxes(masks)
            keep = boxes[:, 2] > boxes[:, 0]  # an empty mask gets the all-zero box
            if not keep.all():
                masks, boxes = masks[keep], boxes[keep]
                labels, meta = _select(sample, keep)
        elif use_boxes:
            kept = np.asarray(out["labels"], dtype=np.int64)
            boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            if len(kept) < n:
                labels, meta = _select(sample, kept)
        return Sample(
            image=image,
            image_id=sample.image_id,
            masks=masks,
            boxes=boxes,
            labels=labels,
            label_map=label_map,
            class_id=sample.class_id,
            meta=meta,
        )

    def __repr__(self) -> str:
        mode = "train" if self.train else "eval"
        return f"PairedTransform(task={self.task!r}, image_size={self.image_size}, {mode}, {self.compose!r})"


def _select(sample: Sample, keep: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Labels and meta of the kept instances (``keep``: boolean mask or positions)."""
    labels = sample.labels[keep]
    ids = sample.meta.get("annotation_ids")
    if ids is None or len(ids) != len(sample.labels):
        return labels, sample.meta
    meta = dict(sample.meta)
    meta["annotation_ids"] = np.asarray(ids)[keep].tolist()
    return labels, meta


def letterbox_size(height: int, width: int, image_size: int) -> tuple[int, int]:
    """(h', w'): the region of an evaluation input (S×S, padded bottom/right) that holds the image of
    original size height×width. Crop a prediction to ``[:h', :w']``, then resize to (height, width).
    Uses albumentations' LongestMaxSize rounding, so it is exact."""
    scale = image_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


# ------------------------------------------------------------------------------------------- building


def build_transform(
    augment: AugmentConfig, task: str, image_size: int, train: bool, ignore_index: int = IGNORE_INDEX
) -> PairedTransform:
    """The paired transform for one split.

    ``train=True``: ``augment.pipeline`` (A.to_dict format) if given, else the preset
    ``augment.preset``. ``train=False``: the deterministic evaluation transform (the augmentation
    config is not used). ``ignore_index`` fills padded label-map pixels of semantic/binary tasks.
    Raises ConfigError for an unknown task, preset or transform, bad transform arguments, or masks
    interpolated with anything but nearest.
    """
    kind = traits(task)  # ConfigError for an unknown task
    if not train:
        transforms = eval_transforms(task, image_size, ignore_index)
    elif augment.pipeline is not None:
        transforms = transforms_from_dict(augment.pipeline, task)
        if kind.stacks:
            transforms += _letterbox(image_size, _mask_fill(task, ignore_index), position="center")
    else:
        transforms = PRESETS.get(augment.preset)(task, image_size, ignore_index)
    return PairedTransform(_compose(transforms, task), task, image_size, train)


def _compose(transforms: list[A.BasicTransform], task: str) -> A.Compose:
    bbox_params = None
    if traits(task).instances:
        bbox_params = A.BboxParams(
            format="pascal_voc",  # x1, y1, x2, y2 in pixels: segpipe's boxes as they are
            label_fields=["labels"],
            clip=True,  # annotation boxes that poke out of the image are clipped, not rejected
            filter_invalid_bboxes=True,
            # A box that still shows a pixel is ≥ 1 px wide, less float error from albumentations'
            # normalised coordinates (0.99999976 happens); thinner than half a pixel, it has left.
            min_width=0.5,
            min_height=0.5,
        )
    return A.Compose(transforms, bbox_params=bbox_params)


def eval_transforms(task: str, image_size: int, ignore_index: int = IGNORE_INDEX) -> list[A.BasicTransform]:
    """Deterministic evaluation/prediction transforms (see the module docstring)."""
    if traits(task).target == "class_id":
        return [A.Resize(image_size, image_size, interpolation=cv2.INTER_LINEAR, mask_interpolation=NEAREST)]
    return _letterbox(image_size, _mask_fill(task, ignore_index), position="top_left")


def _mask_fill(task: str, ignore_index: int) -> int:
    return ignore_index if traits(task).dense else 0


def _letterbox(size: int, fill_mask: int, position: str) -> list[A.BasicTransform]:
    return [
        A.LongestMaxSize(max_size=size, interpolation=cv2.INTER_LINEAR, mask_interpolation=NEAREST),
        A.PadIfNeeded(size, size, position=position, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=fill_mask),
    ]


# -------------------------------------------------------------------------------------------- presets
# Per level: geometry (crop/scale, flips, affine, elastic) and photometry, scaled together. The
# stacking tasks (classification, semantic, binary) start with RandomResizedCrop to S×S so everything
# after it works on small S×S arrays; instance/detection letterbox to S×S first (aspect kept).
# ElasticTransform is in `heavy` only: at 512 px it costs ~10 ms per image, about ten times the rest of
# the `default` pipeline, which would make the loader, not the GPU, the bottleneck.


def _preset_head(level: int, task: str, s: int, ignore_index: int) -> list[A.BasicTransform]:
    """Scale/crop to S×S. level: 0 none, 1 light, 2 default, 3 heavy."""
    fill_mask = _mask_fill(task, ignore_index)
    kind = traits(task)
    if kind.stacks:
        if level == 0:
            return eval_transforms(task, s, ignore_index)
        min_scale = {1: 0.5, 2: 0.25, 3: 0.08 if kind.target == "class_id" else 0.1}[level]
        return [A.RandomResizedCrop((s, s), scale=(min_scale, 1.0), ratio=(3 / 4, 4 / 3), mask_interpolation=NEAREST)]
    head = _letterbox(s, fill_mask, position="top_left" if level == 0 else "center")
    if level >= 2:  # scale jitter on the square canvas: zoom out pads, zoom in crops
        scale, shift, rotate, shear = {2: ((0.75, 1.25), 0.1, 0.0, 0.0), 3: ((0.5, 1.5), 0.2, 10.0, 5.0)}[level]
        head.append(
            A.Affine(scale=scale, translate_percent=(-shift, shift), rotate=(-rotate, rotate), shear=(-shear, shear),
                     keep_ratio=True, mask_interpolation=NEAREST, fill=0, fill_mask=fill_mask, p=0.8)
        )  # fmt: skip
    return head


def _preset(level: int, task: str, s: int, ignore_index: int) -> list[A.BasicTransform]:
    fill_mask = _mask_fill(task, ignore_index)
    kind = traits(task)
    transforms = _preset_head(level, task, s, ignore_index)
    if level == 0:
        return transforms
    transforms.append(A.HorizontalFlip(p=0.5))
    if level == 3 and kind.target != "class_id":
        transforms.append(A.VerticalFlip(p=0.2))
    if kind.stacks and level >= 2:
        rotate, shear, p = {2: (15.0, 5.0, 0.4), 3: (30.0, 10.0, 0.6)}[level]
        transforms.append(
            A.Affine(rotate=(-rotate, rotate), shear=(-shear, shear), scale=(0.9, 1.1), mask_interpolation=NEAREST,
                     fill=0, fill_mask=fill_mask, p=p)
        )  # fmt: skip
    if level == 3 and kind.dense:
        # Displacement ∝ alpha / sigma, so alpha ∝ sigma² keeps the warp a fixed fraction of S
        # (mean ≈ 0.6 % of S). approximate=True: a fixed-size blur kernel, ~3× faster at 512 px.
        sigma = max(2.0, 0.04 * s)
        transforms.append(
            A.ElasticTransform(alpha=sigma * sigma / 2, sigma=sigma, approximate=True, mask_interpolation=NEAREST,
                               fill=0, fill_mask=fill_mask, p=0.3)
        )  # fmt: skip
    limit, p = {1: (0.1, 0.3), 2: (0.2, 0.5), 3: (0.3, 0.7)}[level]
    transforms.append(A.RandomBrightnessContrast(brightness_limit=limit, contrast_limit=limit, p=p))
    if level == 3:
        transforms.append(A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=20, val_shift_limit=10, p=0.3))
        transforms.append(A.GaussNoise(std_range=(0.02, 0.06), p=0.2))
    return transforms


def _register(name: str, level: int, description: str) -> None:
    def build(task: str, image_size: int, ignore_index: int) -> list[A.BasicTransform]:
        return _preset(level, task, image_size, ignore_index)

    build.__name__ = build.__qualname__ = f"preset_{name}"
    PRESETS.add(name, build, description=description)


_register("none", 0, "no augmentation: resize (classification) or letterbox to image_size")
_register("light", 1, "mild scale-crop, horizontal flip, mild brightness/contrast")
_register("default", 2, "scale-crop, horizontal flip, rotate/shear, brightness/contrast")
_register("heavy", 3, "strong scale-crop, flips, rotate/shear, elastic (semantic/binary), colour, noise")


# -------------------------------------------------------------------------------- custom pipelines


def transforms_from_dict(pipeline: Mapping[str, Any], task: str) -> list[A.BasicTransform]:
    """The transforms of an ``A.to_dict`` pipeline, checked for use on ``task``.

    Accepts ``{"transform": {...}}`` (what ``A.to_dict`` writes) or the inner ``{"__class_fullname__":
    ...}``. A top-level Compose is unwrapped: segpipe supplies its own Compose (bbox params, targets),
    so the top-level Compose's own settings are not used. Every transform is checked: the name must be a
    serializable albumentations transform, the arguments valid and known, masks interpolated nearest,
    and it must keep images uint8 H×W×3 (no Normalize / ToTensorV2: that is the model's job).
    """
    root = pipeline.get("transform", pipeline) if isinstance(pipeline, Mapping) else None
    if not isinstance(root, Mapping) or not isinstance(root.get("__class_fullname__"), str):
        raise ConfigError(
            "augment.pipeline: expected the A.to_dict format {transform: {__class_fullname__: Compose, "
            f"transforms: [...]}}, got {_short(pipeline)}"
        )
    where = "augment.pipeline"
    _check_node(root, where, task)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built = A.from_dict({"transform": dict(root)})
    except KeyError as e:  # an unknown container name (leaves were checked above)
        name = str(e.args[0])
        raise ConfigError(f"{where}: unknown albumentations transform {name!r}{_did_you_mean(name)}") from None
    except Exception as e:  # noqa: BLE001 - every leaf was checked; what is left is a container's fault
        raise ConfigError(f"{where} ({root['__class_fullname__']}): {_explain(e)}") from None
    return list(built.transforms) if type(built) is A.Compose else [built]


def _check_node(node: Any, where: str, task: str) -> None:
    if not isinstance(node, Mapping) or not isinstance(node.get("__class_fullname__"), str):
        raise ConfigError(f"{where}: a transform is a mapping with a '__class_fullname__' key, got {_short(node)}")
    name = node["__class_fullname__"]
    children = node.get("transforms")
    if children is not None:
        if not isinstance(children, list):
            raise ConfigError(f"{where} ({name}): 'transforms' must be a list, got {type(children).__name__}")
        for i, child in enumerate(children):
            _check_node(child, f"{where} → {name}.transforms[{i}]", task)
        return
    short = name.rsplit(".", 1)[-1]
    if short in _FORBIDDEN:
        raise ConfigError(
            f"{where}: {short} is not allowed in an augmentation pipeline ({_FORBIDDEN[short]})"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unknown arguments warn; we raise instead, below
            transform = A.from_dict({"transform": dict(node)})
    except KeyError:
        raise ConfigError(f"{where}: unknown albumentations transform {name!r}{_did_you_mean(short)}") from None
    except Exception as e:  # noqa: BLE001 - albumentations raises ValueError/TypeError/pydantic errors
        raise ConfigError(f"{where} ({short}): {_explain(e)}") from None
    # albumentations warns and ignores unknown arguments; a typo would silently do nothing, so refuse.
    # Keys that the transform's own to_dict writes are fine: some subclasses (SafeRotate) serialise
    # their parent's attributes, and A.to_dict output must round-trip.
    unknown = [a for a in getattr(transform, "invalid_args", ()) if a not in transform.to_dict()["transform"]]
    if unknown:
        allowed = ", ".join(p for p in inspect.signature(type(transform).__init__).parameters if p != "self")
        raise ConfigError(
            f"{where} ({short}): unknown argument(s) {', '.join(unknown)}; allowed: {allowed}"
        )
    mask_interpolation = getattr(transform, "mask_interpolation", NEAREST)
    if mask_interpolation not in _NEAREST_FLAGS:
        raise ConfigError(
            f"{where} ({short}): mask_interpolation={mask_interpolation} would blend label values; masks "
            f"must use nearest ({cv2.INTER_NEAREST})"
        )
    kind = TRAITS.get(task)
    needed = None if kind is None or not (kind.needs_masks or kind.instances) else (
        Targets.MASK if kind.needs_masks else Targets.BBOXES)
    if isinstance(transform, A.DualTransform) and needed is not None and needed not in transform._targets:  # noqa: SLF001 - albumentations says which targets a transform handles only here
        raise ConfigError(f"{where} ({short}): does not transform {needed.value.lower()}, needed for task {task}")


def _did_you_mean(name: str) -> str:
    try:
        from albumentations.core.serialization import SERIALIZABLE_REGISTRY
    except ImportError:  # private module; the hint is a nicety
        return ""
    close = difflib.get_close_matches(name, list(SERIALIZABLE_REGISTRY), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _explain(error: Exception) -> str:
    """albumentations' message without pydantic's doc links, on one line."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip() and "errors.pydantic.dev" not in ln]
    return "; ".join(lines) or type(error).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
