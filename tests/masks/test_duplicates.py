"""Duplicate suppression across overlapping masks and classes, and the score threshold as a view."""

from __future__ import annotations

import numpy as np

from segpipe.masks.duplicates import suppress_duplicates
from segpipe.masks.encode import mask_to_rle
from segpipe.masks.formats import ExportContext, kept_rows
from segpipe.masks.rows import ExportImage, PredictionRow


def _row(instance: int, box: tuple[int, int, int, int], score: float, category: int = 1) -> PredictionRow:
    x, y, w, h = box
    mask = np.zeros((64, 64), np.uint8)
    mask[y : y + h, x : x + w] = 1
    return PredictionRow("job", "img", instance, category, f"c{category}", score, [x, y, w, h], mask_to_rle(mask), 64, 64)


def test_one_object_found_three_times_in_two_classes_is_kept_once() -> None:
    rows = [
        _row(0, (10, 10, 20, 20), 0.9, category=1),
        _row(1, (11, 10, 20, 20), 0.8, category=1),  # the same square, shifted a pixel
        _row(2, (10, 11, 20, 20), 0.7, category=2),  # the same square as another class
        _row(3, (40, 40, 10, 10), 0.3, category=2),  # another object
    ]
    kept = suppress_duplicates(rows)
    assert [r.instance for r in kept] == [0, 3]


def test_the_same_class_needs_more_overlap_than_another_class() -> None:
    # IoU of a 20×20 square and the same square shifted 5 px: 300 / 500 = 0.6
    same = [_row(0, (10, 10, 20, 20), 0.9, category=1), _row(1, (15, 10, 20, 20), 0.8, category=1)]
    other = [_row(0, (10, 10, 20, 20), 0.9, category=1), _row(1, (15, 10, 20, 20), 0.8, category=2)]
    assert [r.instance for r in suppress_duplicates(same)] == [0, 1]  # 0.6 < 0.7: two objects side by side
    assert [r.instance for r in suppress_duplicates(other)] == [0]  # 0.6 ≥ 0.5: one object, two names
    assert [r.instance for r in suppress_duplicates(same, iou=0.5)] == [0]


def test_touching_objects_are_not_duplicates() -> None:
    rows = [_row(0, (0, 0, 20, 20), 0.9), _row(1, (20, 0, 20, 20), 0.8), _row(2, (5, 5, 10, 10), 0.95)]
    # the small square inside the first overlaps it by 100/400 = 0.25 < 0.5: both kept
    assert [r.instance for r in suppress_duplicates(rows, iou=0.5)] == [0, 1, 2]


def test_rows_without_scores_pass_unchanged() -> None:
    rows = [_row(0, (0, 0, 20, 20), 0.9), PredictionRow("job", "img", 1, 1, "c1", None, None, None, 64, 64)]
    assert suppress_duplicates(rows) == rows


def test_exports_filter_by_threshold_and_suppress_only_where_asked() -> None:
    rows = [_row(0, (10, 10, 20, 20), 0.9), _row(1, (11, 10, 20, 20), 0.6, category=2), _row(2, (40, 40, 10, 10), 0.2)]
    image = ExportImage("img", "img.png", 64, 64, rows)
    categories = [(1, "c1"), (2, "c2")]
    default = ExportContext(task="instance", categories=categories)
    assert [r.instance for r in kept_rows(image, default)] == [0, 1]  # coco & co: every instance ≥ 0.5
    assert [r.instance for r in kept_rows(image, default, annotator_facing=True)] == [0]  # label-studio, cvat
    low = ExportContext(task="instance", categories=categories, score_threshold=0.1)
    assert [r.instance for r in kept_rows(image, low)] == [0, 1, 2]  # a lower threshold gives more
    off = ExportContext(task="instance", categories=categories, suppress_duplicates=False)
    assert [r.instance for r in kept_rows(image, off, annotator_facing=True)] == [0, 1]
