import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from segpipe.data.targets import (
    annotation_error,
    instances_to_binary,
    instances_to_label_map,
    masks_to_boxes,
    segmentation_to_mask,
    segmentation_to_rle,
    xywh_to_xyxy,
)
from segpipe.errors import DataError

H, W = 12, 16


def _blob() -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[2:7, 3:11] = 1
    mask[8, 0] = 1  # a lone pixel in the first column: run lengths start with a one-run
    return mask


def _uncompressed(mask: np.ndarray) -> dict:
    """Column-major run lengths, zeros first, written independently of segpipe."""
    flat = mask.reshape(-1, order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return {"size": [H, W], "counts": counts}


def test_square_polygon_rasterises_to_its_pixels():
    mask = segmentation_to_mask([[2, 2, 10, 2, 10, 10, 2, 10]], 16, 16)
    assert mask.dtype == np.uint8 and mask.shape == (16, 16) and mask.flags.c_contiguous
    expected = np.zeros((16, 16), np.uint8)
    expected[2:10, 2:10] = 1
    np.testing.assert_array_equal(mask, expected)


def test_several_polygons_merge_into_one_region():
    a = [1.0, 1.0, 5.0, 1.0, 5.0, 5.0, 1.0, 5.0]
    b = [9.0, 6.0, 14.0, 6.0, 14.0, 10.0, 9.0, 10.0]
    both = segmentation_to_mask([a, b], H, W)
    np.testing.assert_array_equal(both, segmentation_to_mask([a], H, W) | segmentation_to_mask([b], H, W))
    assert both.sum() == 16 + 20


def test_uncompressed_and_compressed_rle_decode_to_the_mask():
    mask = _blob()
    compressed = mask_utils.encode(np.asfortranarray(mask))
    as_str = {"size": [H, W], "counts": compressed["counts"].decode("ascii")}
    for segm in (_uncompressed(mask), compressed, as_str):
        np.testing.assert_array_equal(segmentation_to_mask(segm, H, W), mask)
    rle = segmentation_to_rle(as_str, H, W)
    assert isinstance(rle["counts"], bytes) and rle["size"] == [H, W]
    assert int(mask_utils.area(segmentation_to_rle(_uncompressed(mask), H, W))) == int(mask.sum())


@pytest.mark.parametrize(
    ("segm", "message"),
    [
        ([[1, 1, 5, 5]], "polygon 0 has 4 coordinates, needs at least 6"),
        ([[1, 1, 5, 1, 5, 5], [1, 1, 5, 1, 5, 5, 2]], "polygon 1 has 7 coordinates, needs an even count"),
        ([], "empty polygon list"),
        ([[1, 1, "x", 1, 5, 5]], "flat list of numbers"),
        ([[1, 1, float("nan"), 1, 5, 5]], "non-finite"),
        ({"size": [H, W], "counts": [5, 10]}, f"sum to 15, the image has {H * W} pixels"),
        ({"size": [H, W], "counts": [5, -10, H * W + 5]}, "non-negative integers"),
        ({"size": [W, H], "counts": [H * W]}, f"differs from the image size [{H}, {W}]"),
        ({"size": [H, W], "counts": b"zzzz"}, "corrupt compressed RLE"),
        ({"size": [H, W], "counts": ""}, "non-empty string"),
        ({"counts": [H * W]}, "polygon list or an RLE dict"),
        ("polygon", "got str"),
    ],
)
def test_malformed_segmentation_names_annotation_and_image(segm, message):
    with pytest.raises(DataError) as err:
        segmentation_to_mask(segm, H, W, annotation_id=812, image_id=44)
    assert str(err.value).startswith("annotation 812 (image 44): ")
    assert message in str(err.value)


def test_annotation_error_format():
    assert str(annotation_error(812, 44, "bad")) == "annotation 812 (image 44): bad"
    assert str(annotation_error(None, 44, "bad")) == "image 44: bad"


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(0, 4), st.integers(1, 9), st.integers(1, 9)), elements=st.integers(0, 1)))
def test_masks_to_boxes_matches_nonzero_extent(masks):
    boxes = masks_to_boxes(masks)
    assert boxes.dtype == np.float32 and boxes.shape == (len(masks), 4)
    for mask, box in zip(masks, boxes, strict=False):
        ys, xs = np.nonzero(mask)
        expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0, 0, 0, 0]
        np.testing.assert_array_equal(box, expected)


def test_xywh_to_xyxy():
    out = xywh_to_xyxy([[1, 2, 3, 4], [0.5, 0, 10, 0]])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[1, 2, 4, 6], [0.5, 0, 10.5, 0]])
    assert xywh_to_xyxy([]).shape == (0, 4)


def _squares() -> tuple[np.ndarray, np.ndarray]:
    big = np.zeros((H, W), np.uint8)
    big[1:11, 1:11] = 1
    small = np.zeros((H, W), np.uint8)
    small[4:7, 4:7] = 1
    return big, small


@pytest.mark.parametrize("small_first", [False, True])
def test_label_map_draws_small_instances_on_top(small_first):
    big, small = _squares()
    masks, labels = np.stack([big, small]), [1, 2]
    if small_first:
        masks, labels = masks[::-1], labels[::-1]
    label_map = instances_to_label_map(masks, labels)
    assert label_map.dtype == np.uint8 and label_map.shape == (H, W)
    assert (label_map[small == 1] == 2).all()
    assert (label_map[(big == 1) & (small == 0)] == 1).all()
    assert (label_map[big == 0] == 0).all()


def test_crowd_is_ignored_except_under_instances():
    _big, small = _squares()
    crowd = np.zeros((H, W), np.uint8)
    crowd[0:6, 0:6] = 1
    masks = np.stack([crowd, small])
    label_map = instances_to_label_map(masks, [3, 2], crowd=[True, False], ignore_index=200)
    assert (label_map[small == 1] == 2).all()
    assert (label_map[(crowd == 1) & (small == 0)] == 200).all()
    assert (label_map[(crowd == 0) & (small == 0)] == 0).all()
    binary = instances_to_binary(masks, crowd=[True, False])
    np.testing.assert_array_equal(binary, np.where(small == 1, 1, np.where(crowd == 1, 255, 0)))


def test_no_instances_give_background():
    empty = np.zeros((0, H, W), np.uint8)
    assert (instances_to_label_map(empty, []) == 0).all()
    assert instances_to_binary(empty).shape == (H, W)
    assert (instances_to_binary(empty) == 0).all()


def test_binary_is_union_of_instances():
    big, small = _squares()
    other = np.zeros((H, W), np.uint8)
    other[10:, 12:] = 1
    np.testing.assert_array_equal(instances_to_binary(np.stack([small, other, big])), big | other)


def test_label_map_rejects_label_equal_to_ignore():
    _, small = _squares()
    with pytest.raises(ValueError, match="ignore_index"):
        instances_to_label_map(small[None], [255])
