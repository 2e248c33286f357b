"""Paired augmentation: presets × tasks, custom pipelines and their errors, dropped instances, and
property tests that image, masks, boxes and labels stay aligned under random geometric pipelines."""

from __future__ import annotations

import pickle

import albumentations as A
import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segpipe.config import PRESET_NAMES, AugmentConfig
from segpipe.data.augment import PRESETS, build_transform, letterbox_size
from segpipe.data.sample import Sample, empty_boxes, empty_labels
from segpipe.data.targets import masks_to_boxes
from segpipe.errors import ConfigError, DataError
from segpipe.task_kinds import TASK_KINDS

NEAREST = cv2.INTER_NEAREST
IGNORE = 255


# ------------------------------------------------------------------------------------------- helpers


def bounds(mask: np.ndarray) -> list[float]:
    """xyxy of a mask's pixels, x2/y2 exclusive, computed independently of masks_to_boxes."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def make_sample(task: str, h: int = 48, w: int = 64, seed: int = 0) -> Sample:
    """A sample of `task` with three rectangles (instances 1..3, labels 2, 1, 3; ids 100..102)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    rects = [(4, 4, 20, 16), (w // 2, h // 3, w - 6, h - 4), (8, h // 2, 22, h - 2)]  # x1, y1, x2, y2
    masks = np.zeros((3, h, w), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(rects):
        masks[i, y1:y2, x1:x2] = 1
    labels = np.array([2, 1, 3], np.int64)
    meta = {"annotation_ids": [100, 101, 102]}
    if task == "classification":
        return Sample(image=image, image_id=7, class_id=1)
    if task in ("semantic", "binary"):
        label_map = np.zeros((h, w), np.uint8)
        for i in range(3):
            label_map[masks[i] > 0] = 1 if task == "binary" else labels[i]
        return Sample(image=image, image_id=7, label_map=label_map)
    boxes = masks_to_boxes(masks)
    if task == "detection":
        return Sample(image=image, image_id=7, boxes=boxes, labels=labels, meta=meta)
    return Sample(image=image, image_id=7, masks=masks, boxes=boxes, labels=labels, meta=meta)


def smooth_picture(h: int, w: int) -> np.ndarray:
    """Ramps and a slow wave in the three channels: resizing changes it little, and no flat, mirrored
    or shifted picture is close to it."""
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    channels = [255 * xx / (w - 1), 255 * yy / (h - 1), 127.5 + 100 * np.sin(2 * np.pi * (xx / w + yy / h))]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def custom(transforms: list[A.BasicTransform]) -> AugmentConfig:
    return AugmentConfig(pipeline=A.to_dict(A.Compose(transforms)))


# ------------------------------------------------------------------------------------------- presets


def test_preset_names_are_the_config_names() -> None:
    assert sorted(PRESETS.names()) == sorted(PRESET_NAMES)


@pytest.mark.parametrize("preset", PRESET_NAMES)
@pytest.mark.parametrize("task", TASK_KINDS)
def test_presets_give_valid_samples_of_the_image_size(preset: str, task: str) -> None:
    size = 40
    transform = build_transform(AugmentConfig(preset=preset), task, size, train=True, ignore_index=IGNORE)
    sample = make_sample(task)
    before = {k: v.copy() for k, v in vars(sample).items() if isinstance(v, np.ndarray)}
    for seed in range(6):
        transform.set_random_seed(seed)
        out = transform(sample)
        out.check()
        assert out.image.shape == (size, size, 3)
        assert out.image_id == sample.image_id and out.class_id == sample.class_id
        if task in ("semantic", "binary"):
            assert set(np.unique(out.label_map)) <= set(np.unique(sample.label_map)) | {IGNORE}
        else:
            assert out.label_map is None
        if task == "instance":
            assert set(np.unique(out.masks)) <= {0, 1}
            assert all(m.any() for m in out.masks)
            assert out.boxes.tolist() == [bounds(m) for m in out.masks]
        if task in ("instance", "detection"):
            ids = dict(zip(sample.meta["annotation_ids"], sample.labels.tolist(), strict=False))
            assert [ids[a] for a in out.meta["annotation_ids"]] == out.labels.tolist()
            assert ((out.boxes >= 0) & (out.boxes <= size)).all()
    for name, array in before.items():  # the input sample is left as it was
        np.testing.assert_array_equal(getattr(sample, name), array)


def test_unknown_preset_and_task_list_the_options() -> None:
    with pytest.raises(ConfigError, match="unknown augmentation preset 'wild'; known: default, heavy"):
        PRESETS.get("wild")
    with pytest.raises(ConfigError, match="unknown task 'segmentation'; known: classification"):
        build_transform(AugmentConfig(), "segmentation", 32, train=True)


def test_seeded_transforms_repeat_and_survive_pickling() -> None:
    transform = build_transform(AugmentConfig(preset="heavy"), "semantic", 32, train=True)
    sample = make_sample("semantic")
    transform.set_random_seed(11)
    first = [transform(sample).label_map for _ in range(3)]
    clone = pickle.loads(pickle.dumps(transform))
    clone.set_random_seed(11)
    assert all(np.array_equal(a, clone(sample).label_map) for a in first)
    assert not all(np.array_equal(first[0], m) for m in first[1:])  # and the draws do differ


# ------------------------------------------------------------------------------------------ evaluation


@pytest.mark.parametrize("task", ["semantic", "binary", "instance", "detection"])
def test_eval_letterbox_is_deterministic_and_maps_back(task: str) -> None:
    sample = make_sample(task, h=48, w=64)
    sample.image = smooth_picture(48, 64)  # noise would not survive halving: nothing to compare
    transform = build_transform(AugmentConfig(preset="heavy"), task, 32, train=False)
    out, again = transform(sample), transform(sample)
    np.testing.assert_array_equal(out.image, again.image)
    h, w = letterbox_size(48, 64, 32)
    assert (h, w) == (24, 32)
    assert (out.image[h:] == 0).all()  # padding only below/right of the image: top-left anchored
    restored = cv2.resize(out.image[:h, :w], (64, 48), interpolation=cv2.INTER_LINEAR)
    # the same picture at half the resolution, a grey level or so off; a flat picture is ~65 levels off,
    # a mirrored one ~70, one shifted by a pixel ~9
    assert np.abs(restored.astype(int) - sample.image.astype(int)).mean() < 5
    if task in ("semantic", "binary"):
        assert (out.label_map[h:] == IGNORE).all() and (out.label_map[:h, :w] != IGNORE).all()
    if task in ("instance", "detection"):
        np.testing.assert_allclose(out.boxes, sample.boxes * 0.5, atol=1.0)


def test_eval_at_scale_one_is_exact() -> None:
    sample = make_sample("semantic", h=48, w=64)
    out = build_transform(AugmentConfig(), "semantic", 64, train=False)(sample)
    np.testing.assert_array_equal(out.label_map[:48], sample.label_map)
    np.testing.assert_array_equal(out.image[:48], sample.image)


def test_classification_eval_resizes_to_a_square() -> None:
    out = build_transform(AugmentConfig(), "classification", 24, train=False)(make_sample("classification"))
    assert out.image.shape == (24, 24, 3) and out.class_id == 1


# ----------------------------------------------------------------------------------- custom pipelines


def test_from_dict_pipeline_replaces_the_preset_and_is_sized_for_stacking() -> None:
    pipeline = custom([A.HorizontalFlip(p=1.0), A.RandomCrop(20, 30, p=1.0)])
    semantic = build_transform(pipeline, "semantic", 48, train=True)(make_sample("semantic"))
    semantic.check()
    assert semantic.image.shape == (48, 48, 3)  # 20×30 letterboxed to 48: 32×48, 8 ignore rows each side
    assert (semantic.label_map[:8] == IGNORE).all() and (semantic.label_map[40:] == IGNORE).all()
    assert (semantic.label_map[8:40] != IGNORE).all()
    instance = build_transform(pipeline, "instance", 48, train=True)(make_sample("instance"))
    instance.check()
    assert instance.image.shape == (20, 30, 3)  # instance/detection keep the pipeline's own size


def test_pipeline_ending_at_the_size_is_not_resampled() -> None:
    sample = make_sample("semantic", h=40, w=40)
    flip = build_transform(custom([A.HorizontalFlip(p=1.0)]), "semantic", 40, train=True)(sample)
    np.testing.assert_array_equal(flip.image, sample.image[:, ::-1])
    np.testing.assert_array_equal(flip.label_map, sample.label_map[:, ::-1])


def test_pipeline_accepts_the_inner_transform_dict() -> None:
    inner = A.to_dict(A.Compose([A.VerticalFlip(p=1.0)]))["transform"]
    sample = make_sample("instance")
    out = build_transform(AugmentConfig(pipeline=inner), "instance", 32, train=True)(sample)
    np.testing.assert_array_equal(out.masks, sample.masks[:, ::-1])


def leaf(transform: str, **args: object) -> dict:
    return {"transform": {"__class_fullname__": "Compose", "transforms": [{"__class_fullname__": transform, **args}]}}


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        (leaf("HorizontalFlp", p=0.5), r"unknown albumentations transform 'HorizontalFlp' \(did you mean Horizon"),
        (leaf("Affine", rotate="lots", p=1), r"Compose.transforms\[0\] \(Affine\): .*rotate"),
        (leaf("Affine", rotat=10, p=1), r"\(Affine\): unknown argument\(s\) rotat; allowed: .*rotate"),
        (leaf("Affine", mask_interpolation=cv2.INTER_LINEAR, p=1), r"\(Affine\): mask_interpolation=1 .*nearest"),
        (leaf("Normalize", p=1), r"Normalize is not allowed .*uint8"),
        (leaf("Lambda", name="f", p=1), r"Lambda is not allowed .*run code"),
        ({"transform": {"__class_fullname__": "OneOff", "transforms": []}}, r"unknown .* transform 'OneOff'"),
        ({"transform": {"__class_fullname__": "Compose", "transforms": "Blur"}}, r"'transforms' must be a list"),
        ({"transforms": []}, r"expected the A.to_dict format"),
        ({"transform": {"__class_fullname__": "Compose", "transforms": [{"p": 1}]}}, r"__class_fullname__"),
    ],
)
def test_bad_pipelines_fail_with_a_clear_config_error(pipeline: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_transform(AugmentConfig(pipeline=pipeline), "semantic", 32, train=True)


def test_nested_errors_name_their_place() -> None:
    cubic = A.Rotate(mask_interpolation=cv2.INTER_CUBIC)
    pipeline = A.to_dict(A.Compose([A.HorizontalFlip(), A.OneOf([A.VerticalFlip(), cubic])]))
    where = r"Compose.transforms\[1\] → OneOf.transforms\[1\] \(Rotate\): mask_interpolation=2"
    with pytest.raises(ConfigError, match=where):
        build_transform(AugmentConfig(pipeline=pipeline), "instance", 32, train=True)


def test_samples_that_break_the_contract_raise_data_error_naming_the_image() -> None:
    sample = make_sample("semantic")
    sample.label_map = sample.label_map[:-1]
    with pytest.raises(DataError, match="image 7: augmentation failed"):
        build_transform(AugmentConfig(), "semantic", 32, train=True)(sample)


# ------------------------------------------------------------------------------ vanished instances


def test_instances_cropped_away_drop_from_masks_boxes_labels_and_ids() -> None:
    sample = make_sample("instance")  # instance 101 (label 1) lies in the right half only
    crop = custom([A.Crop(x_min=0, y_min=0, x_max=30, y_max=48)])
    out = build_transform(crop, "instance", 32, train=True)(sample)
    out.check()
    assert out.meta["annotation_ids"] == [100, 102] and out.labels.tolist() == [2, 3]
    assert out.boxes.tolist() == [bounds(m) for m in out.masks] == [[4, 4, 20, 16], [8, 24, 22, 46]]
    assert sample.meta["annotation_ids"] == [100, 101, 102]  # the input's meta is untouched


def test_boxes_cropped_away_drop_with_their_labels_and_ids() -> None:
    sample = make_sample("detection")
    crop = custom([A.Crop(x_min=0, y_min=0, x_max=30, y_max=48)])
    out = build_transform(crop, "detection", 32, train=True)(sample)
    out.check()
    assert out.meta["annotation_ids"] == [100, 102] and out.labels.tolist() == [2, 3]
    assert out.boxes.tolist() == [[4, 4, 20, 16], [8, 24, 22, 46]]


def test_boxes_outside_the_image_are_clipped_not_rejected() -> None:
    sample = make_sample("detection")
    sample.boxes = np.array([[-5, -5, 10, 10], [50, 30, 70, 50], [1, 1, 2, 2]], np.float32)
    out = build_transform(AugmentConfig(preset="none"), "detection", 64, train=True)(sample)
    assert out.boxes.tolist() == [[0, 0, 10, 10], [50, 30, 64, 48], [1, 1, 2, 2]]


def test_samples_without_instances_pass_through() -> None:
    sample = Sample(image=np.zeros((30, 50, 3), np.uint8), image_id="empty", boxes=empty_boxes(), labels=empty_labels())
    for task in ("instance", "detection"):
        out = build_transform(AugmentConfig(preset="heavy"), task, 32, train=True)(sample)
        out.check()
        assert out.masks.shape == (0, 32, 32) and out.boxes.shape == (0, 4)


# --------------------------------------------------------------------------- alignment properties
# The image encodes its own annotation: channel 0 = (instance or class index) × STEP. With nearest
# interpolation for the image too, every output pixel is a copy of some input pixel (or fill 0), so the
# image decodes to the instance map the masks must equal, pixel for pixel.

STEP = 40
SEEDS = st.integers(0, 2**16)
DIHEDRAL = [A.HorizontalFlip(p=1), A.VerticalFlip(p=1), A.Transpose(p=1), A.D4(p=1), A.RandomRotate90(p=1)]

def geometric(fill_mask: int) -> st.SearchStrategy[A.BasicTransform]:
    """One random geometric transform, deterministic given the Compose seed; images interpolate
    nearest (so they stay decodable), images pad with 0 and masks with `fill_mask`."""
    fills = {"fill": 0, "fill_mask": fill_mask}
    return st.one_of(
        st.sampled_from(DIHEDRAL),
        st.builds(
            lambda r, s, tx, ty, sh: A.Affine(rotate=(r, r), scale=(s, s), translate_percent={"x": tx, "y": ty},
                                              shear=(sh, sh), interpolation=NEAREST, p=1, **fills),
            st.floats(-180, 180), st.floats(0.5, 1.6), st.floats(-0.3, 0.3), st.floats(-0.3, 0.3), st.floats(-30, 30),
        ),
        st.builds(lambda a: A.Rotate(limit=(a, a), interpolation=NEAREST, p=1, **fills), st.floats(-180, 180)),
        st.builds(lambda a: A.SafeRotate(limit=(a, a), interpolation=NEAREST, p=1, **fills), st.floats(-90, 90)),
        st.builds(lambda h, w: A.RandomResizedCrop((h, w), scale=(0.2, 1.0), interpolation=NEAREST, p=1),
                  st.integers(12, 48), st.integers(12, 48)),
        st.builds(lambda h, w: A.RandomCrop(h, w, pad_if_needed=True, p=1, **fills),
                  st.integers(8, 56), st.integers(8, 56)),
        st.builds(lambda h, w, pos: A.PadIfNeeded(h, w, position=pos, p=1, **fills), st.integers(16, 64),
                  st.integers(16, 64), st.sampled_from(["center", "top_left", "bottom_right", "random"])),
        st.builds(lambda h, w: A.Resize(h, w, interpolation=NEAREST, p=1), st.integers(12, 64), st.integers(12, 64)),
        st.builds(lambda a, s: A.ElasticTransform(alpha=a, sigma=s, interpolation=NEAREST, p=1, **fills),
                  st.floats(1, 60), st.floats(2, 8)),
        st.builds(lambda n, d: A.GridDistortion(num_steps=n, distort_limit=(-d, d), interpolation=NEAREST, p=1,
                                                **fills), st.integers(2, 6), st.floats(0.05, 0.4)),
        st.builds(lambda s, fit: A.Perspective(scale=(s, s), fit_output=fit, interpolation=NEAREST, p=1, **fills),
                  st.floats(0.02, 0.15), st.booleans()),
    )  # fmt: skip


@st.composite
def instance_layouts(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """(instance map H×W int, 0 = background, k = instance k; labels per instance) with 1..5
    instances, rectangles painted in turn (later ones may cover earlier ones; empty ones are removed)."""
    h, w = draw(st.integers(16, 40)), draw(st.integers(16, 40))
    inst = np.zeros((h, w), np.int64)
    for k in range(1, draw(st.integers(1, 5)) + 1):
        x1, y1 = draw(st.integers(0, w - 2)), draw(st.integers(0, h - 2))
        x2, y2 = draw(st.integers(x1 + 1, w)), draw(st.integers(y1 + 1, h))
        inst[y1:y2, x1:x2] = k
    present = [k for k in np.unique(inst) if k]
    relabelled = np.zeros_like(inst)
    for new, k in enumerate(present, start=1):
        relabelled[inst == k] = new
    labels = np.array([draw(st.integers(1, 9)) for _ in present], np.int64)
    return relabelled, labels


def encoded_image(index_map: np.ndarray) -> np.ndarray:
    image = np.zeros((*index_map.shape, 3), np.uint8)
    image[..., 0] = index_map * STEP
    image[..., 1] = 77  # constant content: fill 0 there marks padding independently of channel 0
    return image


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=instance_layouts(), transforms=st.lists(geometric(0), min_size=1, max_size=3), seed=SEEDS)
def test_instances_stay_aligned_under_random_geometry(layout, transforms, seed) -> None:
    inst, labels = layout
    n = len(labels)
    masks = np.stack([(inst == k + 1).astype(np.uint8) for k in range(n)])
    ids = [500 + k for k in range(n)]
    sample = Sample(image=encoded_image(inst), image_id=1, masks=masks, boxes=masks_to_boxes(masks), labels=labels,
                    meta={"annotation_ids": ids})  # fmt: skip
    transform = build_transform(custom(transforms), "instance", 32, train=True)
    transform.set_random_seed(seed)
    out = transform(sample)
    out.check()

    decoded = out.image[..., 0].astype(np.int64) // STEP
    assert (out.image[..., 0] % STEP == 0).all()  # nearest: no blended values
    assert set(np.unique(out.masks)) <= {0, 1}
    survivors = [k for k in range(1, n + 1) if (decoded == k).any()]
    assert [a - 500 + 1 for a in out.meta["annotation_ids"]] == survivors  # none lost, none invented
    for j, k in enumerate(survivors):
        np.testing.assert_array_equal(out.masks[j], (decoded == k).astype(np.uint8))
        assert out.labels[j] == labels[k - 1]
        assert out.boxes[j].tolist() == bounds(out.masks[j])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=instance_layouts(), transforms=st.lists(geometric(IGNORE), min_size=1, max_size=3), seed=SEEDS)
def test_label_maps_stay_aligned_and_pad_with_ignore(layout, transforms, seed) -> None:
    classes, _ = layout
    classes = classes % 4  # semantic classes 0..3, 0 = background
    image = encoded_image(classes + 1)  # +1: background encodes as STEP, so 0 means padding
    sample = Sample(image=image, image_id=2, label_map=classes.astype(np.uint8))
    size = 24
    # Ending at size×size with nearest keeps the test's image decodable (segpipe's own final letterbox
    # resizes images bilinearly); a pipeline ending elsewhere is letterboxed by segpipe.
    pipeline = custom([*transforms, A.Resize(size, size, interpolation=NEAREST, p=1)])
    transform = build_transform(pipeline, "semantic", size, train=True, ignore_index=IGNORE)
    transform.set_random_seed(seed)
    out = transform(sample)
    out.check()

    channel = out.image[..., 0].astype(np.int64)
    padding = out.label_map == IGNORE
    np.testing.assert_array_equal(padding, channel == 0)
    np.testing.assert_array_equal(channel[~padding], (out.label_map[~padding].astype(np.int64) + 1) * STEP)


axis_aligned = st.one_of(
    st.sampled_from(DIHEDRAL),
    st.builds(lambda h, w: A.RandomCrop(h, w, pad_if_needed=True, p=1), st.integers(8, 56), st.integers(8, 56)),
    st.builds(lambda h, w, pos: A.PadIfNeeded(h, w, position=pos, p=1), st.integers(16, 64), st.integers(16, 64),
              st.sampled_from(["center", "top_left", "bottom_right", "random"])),
)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(layout=instance_layouts(), transforms=st.lists(axis_aligned, min_size=1, max_size=3), seed=SEEDS)
def test_detection_boxes_follow_their_objects(layout, transforms, seed) -> None:
    """Boxes move as boxes (no masks): under flips, rotations by 90°, crops and pads a rectangle's box
    stays exactly its bounds; what leaves the image drops with its label and id."""
    inst, labels = layout
    n = len(labels)
    boxes = np.array([bounds(inst == k + 1) for k in range(n)], np.float32)
    # One rectangle per image region is needed for exact bounds: keep only fully visible rectangles.
    whole = [k for k in range(n) if (inst == k + 1).sum() == np.prod(boxes[k, 2:] - boxes[k, :2])]
    visible_map = np.where(np.isin(inst, [k + 1 for k in whole]), inst, 0)
    meta = {"annotation_ids": [500 + k for k in whole]}
    sample = Sample(image=encoded_image(visible_map), image_id=3, boxes=boxes[whole], labels=labels[whole], meta=meta)
    transform = build_transform(custom(transforms), "detection", 32, train=True)
    transform.set_random_seed(seed)
    out = transform(sample)
    out.check()

    decoded = out.image[..., 0].astype(np.int64) // STEP
    visible = [k for k in whole if (decoded == k + 1).any()]
    assert [a - 500 for a in out.meta["annotation_ids"]] == visible
    for j, k in enumerate(visible):
        np.testing.assert_allclose(out.boxes[j], bounds(decoded == k + 1), atol=1e-3)  # boxes are normalised inside
        assert out.labels[j] == labels[k]

