"""A Label Studio export (tasks with annotations) as a snapshot draft: which annotation counts, which
tasks are left out, every region kind, and labels the model does not know."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from segpipe.errors import DataError
from segpipe.masks.formats.label_studio import BOX_PROMPT, mask_to_brush_rle
from segpipe.snapshots.label_studio import choose_annotation, draft_from_export

H, W = 40, 50


def _png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _load(task: dict[str, Any]) -> tuple[str, bytes]:
    return f"task-{task['id']}.png", _png()


def _region(kind: str, value: dict[str, Any], rid: str = "r1") -> dict[str, Any]:
    return {"id": rid, "type": kind, "from_name": "label", "to_name": "image", "original_width": W,
            "original_height": H, "value": value}


def _task(tid: int, *annotations: dict[str, Any]) -> dict[str, Any]:
    return {"id": tid, "data": {"image": f"/data/upload/1/{tid}.png"}, "annotations": list(annotations)}


def _ann(aid: int, result: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {"id": aid, "result": result, "was_cancelled": False, "ground_truth": False,
            "updated_at": f"2026-12-0{aid}T10:00:00Z", **kw}


def test_ground_truth_first_then_the_latest_and_cancelled_tasks_left_out() -> None:
    older, newer = _ann(1, []), _ann(2, [])
    assert choose_annotation(_task(1, older, newer))["id"] == 2
    truth = _ann(1, [], ground_truth=True)
    assert choose_annotation(_task(1, truth, newer))["id"] == 1
    assert choose_annotation(_task(1)) is None
    assert choose_annotation(_task(1, _ann(1, [], was_cancelled=True))) is None


def test_every_region_kind_becomes_its_annotation() -> None:
    mask = np.zeros((H, W), bool)
    mask[5:15, 10:30] = True
    brush = _region("brushlabels", {"format": "rle", "rle": mask_to_brush_rle(mask), "brushlabels": ["cat"]}, "b")
    polygon = _region("polygonlabels", {"points": [[20, 50], [60, 50], [60, 90]], "polygonlabels": ["dog"]}, "p")
    box = _region("rectanglelabels", {"x": 10, "y": 25, "width": 20, "height": 50, "rotation": 0,
                                      "rectanglelabels": ["dog"]}, "r")
    comment = _region("textarea", {"text": ["blurry"]}, "t")
    tasks = [_task(7, _ann(1, [brush, polygon, box, comment])), _task(8, _ann(1, [], was_cancelled=True)),
             _task(9)]
    draft = draft_from_export(tasks, ["cat", "dog"], _load)
    assert list(draft.images) == ["task-7.png"]
    coco = draft.to_coco()
    by_kind = {a["category_id"]: a for a in coco["annotations"] if "segmentation" in a}
    cat = coco["annotations"][0]
    assert cat["category_id"] == 1 and (mask_utils.decode(cat["segmentation"]).astype(bool) == mask).all()
    polygon_ann = coco["annotations"][1]
    assert polygon_ann["segmentation"] == [[10.0, 20.0, 30.0, 20.0, 30.0, 36.0]]
    assert polygon_ann["bbox"][2:] == pytest.approx([20.0, 16.0], abs=1.0)
    box_ann = coco["annotations"][2]
    assert box_ann["bbox"] == [5.0, 10.0, 10.0, 20.0] and "segmentation" not in box_ann
    assert len(coco["annotations"]) == 3 and set(by_kind) == {1, 2}


def test_choices_label_the_whole_image() -> None:
    choice = _region("choices", {"choices": ["dog"]})
    coco = draft_from_export([_task(3, _ann(1, [choice]))], ["cat", "dog"], _load).to_coco()
    assert [(a["category_id"], a["bbox"]) for a in coco["annotations"]] == [(2, [0.0, 0.0, float(W), float(H)])]


def test_a_label_the_model_does_not_know_is_refused_with_both_lists() -> None:
    box = _region("rectanglelabels", {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["horse"]})
    with pytest.raises(DataError, match=r"task 4 annotation 1 region 'r1': label 'horse' is not one of the "
                                        r"model's classes \['cat', 'dog'\]"):
        draft_from_export([_task(4, _ann(1, [box]))], ["cat", "dog"], _load)


def test_regions_drawn_on_another_image_size_or_rotated_are_refused() -> None:
    box = _region("rectanglelabels", {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["cat"]})
    with pytest.raises(DataError, match="drawn on a 100×40 image"):
        draft_from_export([_task(5, _ann(1, [box | {"original_width": 100}]))], ["cat"], _load)
    rotated = _region("rectanglelabels", {"x": 1, "y": 1, "width": 5, "height": 5, "rotation": 30,
                                          "rectanglelabels": ["cat"]})
    with pytest.raises(DataError, match="rotated rectangle"):
        draft_from_export([_task(5, _ann(1, [rotated]))], ["cat"], _load)


def test_boxes_drawn_with_the_box_prompt_tool_are_passed_over() -> None:
    # the smart rectangle of segpipe's box-to-mask asked for the brush mask beside it: it is no annotation,
    # even rotated or with a label the model lacks
    mask = np.zeros((H, W), bool)
    mask[5:15, 10:30] = True
    brush = _region("brushlabels", {"format": "rle", "rle": mask_to_brush_rle(mask), "brushlabels": ["cat"]}, "b")
    prompt = _region("rectanglelabels", {"x": 20, "y": 12, "width": 40, "height": 25, "rotation": 30,
                                         "rectanglelabels": ["horse"]}, "p") | {"from_name": BOX_PROMPT}
    coco = draft_from_export([_task(6, _ann(1, [brush, prompt]))], ["cat"], _load).to_coco()
    assert [(a["category_id"], "segmentation" in a) for a in coco["annotations"]] == [(1, True)]


def test_a_snapshot_for_a_model_keeps_its_category_ids() -> None:
    """Pulled for a model (a binary mask-folder model's one class is id 255, a COCO model's ids are sparse),
    the snapshot's COCO uses the model's ids: the retraining gate compares category maps by id, and with
    1..N it could never evaluate production on the snapshot."""
    mask = np.zeros((H, W), bool)
    mask[5:15, 10:30] = True
    brush = _region("brushlabels", {"format": "rle", "rle": mask_to_brush_rle(mask), "brushlabels": ["fg"]}, "b")
    box = _region("rectanglelabels", {"x": 10, "y": 25, "width": 20, "height": 50, "rectanglelabels": ["cat"]}, "r")
    coco = draft_from_export([_task(7, _ann(1, [brush, box]))], ["fg", "cat"], _load, category_ids=[255, 3]).to_coco()
    assert coco["categories"] == [{"id": 255, "name": "fg", "supercategory": ""},
                                  {"id": 3, "name": "cat", "supercategory": ""}]
    assert [a["category_id"] for a in coco["annotations"]] == [255, 3]
    assert draft_from_export([_task(7, _ann(1, [brush]))], ["fg"], _load).to_coco()["categories"][0]["id"] == 1
    with pytest.raises(DataError, match=r"category ids \[1, 1\] do not fit the labels"):
        draft_from_export([_task(7, _ann(1, [brush]))], ["fg", "cat"], _load, category_ids=[1, 1]).to_coco()
