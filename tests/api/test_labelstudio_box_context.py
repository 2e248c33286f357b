"""Reading the drawn rectangle out of Label Studio's interactive request (pure: no app, no worker)."""

from __future__ import annotations

from typing import Any

import pytest

from segpipe.api.errors import ApiError
from segpipe.api.labelstudio.box_context import interactive_context, parse_box_prompt


def _rect(x: float = 10, y: float = 20, w: float = 30, h: float = 40, **extra: Any) -> dict[str, Any]:
    return {"id": "a", "type": "rectanglelabels", "from_name": "box_prompt", "to_name": "image",
            "original_width": 200, "original_height": 100,
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": ["cell"]}} | extra


def test_the_context_comes_from_params_as_label_studio_sends_it_or_from_the_top() -> None:
    assert interactive_context({"params": {"login": None, "context": {"result": []}}}) == {"result": []}
    assert interactive_context({"context": {"result": [1]}}) == {"result": [1]}
    # a plain prediction request ("retrieve predictions") has no context, or a null one
    assert interactive_context({"params": {"login": None, "password": None}}) is None
    assert interactive_context({"params": {"context": None}, "context": None}) is None


def test_the_last_positive_rectangle_is_the_prompt() -> None:
    keypoint = {"type": "keypointlabels", "value": {"x": 1, "y": 2, "keypointlabels": ["cell"]}}
    negative = _rect(1, 1, 5, 5) | {"is_positive": False}
    prompt = parse_box_prompt({"result": [keypoint, _rect(1, 2, 3, 4), _rect(5, 6, 7, 8, id="b"), negative]})
    assert prompt.box == (5, 6, 7, 8) and prompt.label == "cell" and prompt.region_id == "b"
    assert (prompt.from_name, prompt.to_name) == ("box_prompt", "image")
    unlabelled = _rect()
    unlabelled["value"].pop("rectanglelabels")
    assert parse_box_prompt({"result": [unlabelled]}).label is None


def test_a_rotated_rectangle_becomes_the_upright_box_around_it() -> None:
    # 200×100 image: a 40×20 px rectangle at (20, 20) px turned 90° clockwise about its top-left corner
    # covers x 0..20, y 20..60 px
    prompt = parse_box_prompt({"result": [_rect(10, 20, 20, 20) | {"value": {
        "x": 10, "y": 20, "width": 20, "height": 20, "rotation": 90, "rectanglelabels": ["cell"]}}]})
    assert prompt.box == pytest.approx((0.0, 20.0, 10.0, 40.0))
    no_size = _rect() | {"original_width": None}
    no_size["value"] = {**no_size["value"], "rotation": 30}
    with pytest.raises(ApiError, match=r"context.result\[0\].original_width must be a finite number"):
        parse_box_prompt({"result": [no_size]})


@pytest.mark.parametrize(
    ("context", "field"),
    [
        (None, "context"),
        ({"result": "x"}, "context.result"),
        ({"result": [_rect() | {"value": [1, 2]}]}, "context.result[0].value"),
        ({"result": [_rect(x=float("nan"))]}, "context.result[0].value.x"),
        ({"result": [_rect(y=True)]}, "context.result[0].value.y"),
        ({"result": [_rect(h=10**400)]}, "context.result[0].value.height"),
        ({"result": [_rect(w=1.7e308, x=1.7e308 - 1e300)]}, "context.result[0].value"),
        ({"result": [_rect(w=-3)]}, "context.result[0].value"),
        ({"result": [_rect(x=-50, w=40)]}, "context.result[0].value"),
        ({"result": [_rect() | {"to_name": 3}]}, "context.result[0].to_name"),
        ({"result": [_rect() | {"value": {"x": 1, "y": 1, "width": 2, "height": 2, "rectanglelabels": "cell"}}]},
         "context.result[0].value.rectanglelabels"),
    ],
)
def test_malformed_contexts_are_refused_naming_the_field(context: Any, field: str) -> None:
    with pytest.raises(ApiError) as raised:
        parse_box_prompt(context)
    assert raised.value.status_code == 422 and raised.value.extra == {"field": field}
    assert raised.value.message.startswith(f"interactive request: {field} ")
