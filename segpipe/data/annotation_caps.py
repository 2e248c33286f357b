"""Caps on annotations per dataset and per image (``SEGPIPE_MAX_ANNOTATIONS_PER_DATASET``, ``…_PER_IMAGE``).

A COCO file with a million annotations made a worker validate for minutes and then run out of memory
building pycocotools' index. The per-dataset cap is checked twice, both times before anything is
built from the annotations: on the raw text, by counting ``"category_id"`` keys (every annotation
has exactly one; C-speed, before the JSON is parsed into a million dicts), and on the parsed list.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AnnotationCaps:
    per_dataset: int
    per_image: int

    @classmethod
    def current(cls) -> AnnotationCaps:
        from segpipe.settings import get_settings

        s = get_settings()
        return cls(s.max_annotations_per_dataset, s.max_annotations_per_image)


def precount(text: str) -> int:
    """An upper bound of the annotations in a COCO file's text, before parsing it."""
    return text.count('"category_id"')


def dataset_problem(count: int, caps: AnnotationCaps, *, counted_raw: bool = False) -> str | None:
    """Why ``count`` annotations are too many for one dataset, or None."""
    if count <= caps.per_dataset:
        return None
    how = " (counted before parsing)" if counted_raw else ""
    return (f"{count} annotations{how}; a dataset may hold at most {caps.per_dataset} "
            "(SEGPIPE_MAX_ANNOTATIONS_PER_DATASET): split it, or raise the limit")


def image_problem(count: int, caps: AnnotationCaps) -> str | None:
    if count <= caps.per_image:
        return None
    return f"{count} annotations; an image may carry at most {caps.per_image} (SEGPIPE_MAX_ANNOTATIONS_PER_IMAGE)"
