"""The rectangle an annotator drew with Label Studio's smart tool, read from an interactive request.

Label Studio's editor, when a region is finished with a smart tool and an interactive ML backend is
connected, posts ``{"task": ID, "context": {"result": [REGION, …]}}`` to its own
``/api/ml/{pk}/interactive-annotating``; Label Studio forwards that to the backend's ``/predict`` with
the one task in ``tasks`` and the context in ``params.context`` (label-studio-ml-backend's own server
reads it there; a caller that puts ``context`` at the top of the body is read too). Each REGION is a
serialized result: ``type`` (``rectanglelabels``), ``from_name`` / ``to_name``, ``original_width`` /
``original_height`` (pixels), ``image_rotation``, optional ``is_positive`` and ``value`` with ``x, y,
width, height`` (percent of the image, top-left corner), ``rotation`` (degrees, clockwise about that
corner) and ``rectanglelabels`` (the label the annotator chose). Newer editors send every rectangle of
the control with the one just drawn last, so the last rectangle is the prompt.

Everything here is untrusted input: each problem is a 422 naming the field (``context.result[2].value.width``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from segpipe.api.errors import ApiError

RECTANGLE_TYPES = ("rectanglelabels", "rectangle")


@dataclass(frozen=True)
class BoxPrompt:
    """The drawn box as Label Studio gives it, rotation resolved to the enclosing upright box."""

    box: tuple[float, float, float, float]  # x, y, width, height in percent of the image
    label: str | None  # the label chosen for the rectangle, if any
    from_name: str | None
    to_name: str | None
    region_id: str | None


def interactive_context(body: dict[str, Any]) -> Any:
    """The request's interactive context, or None for a plain prediction request (no context, or null)."""
    params = body.get("params")
    if isinstance(params, dict) and params.get("context") is not None:
        return params["context"]
    return body.get("context")


def _refuse(where: str, problem: str) -> ApiError:
    return ApiError(422, f"interactive request: {where} {problem}", detail={"field": where})


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _refuse(where, f"must be a finite number, got {value!r:.80}")
    try:
        number = float(value)
    except OverflowError:  # an integer past a float's range
        number = math.inf
    if not math.isfinite(number):
        raise _refuse(where, f"must be a finite number, got {value!r:.80}")
    return number


def _text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _refuse(where, f"must be a string, got {value!r}")
    return value


def parse_box_prompt(context: Any) -> BoxPrompt:
    """The prompt box of an interactive context; `ApiError` 422 naming the field when there is none or
    it cannot be read."""
    if not isinstance(context, dict):
        raise _refuse("context", f"must be an object with a 'result' list, got {type(context).__name__}")
    result = context.get("result")
    if not isinstance(result, list) or not result:
        raise _refuse("context.result", "must be a non-empty list of the regions the annotator drew "
                                        f"(got {result!r:.80})")
    prompts = []
    for i, item in enumerate(result):
        if not isinstance(item, dict):
            raise _refuse(f"context.result[{i}]", f"must be an object, got {type(item).__name__}")
        if item.get("type") in RECTANGLE_TYPES and item.get("is_positive", True) is not False:
            prompts.append((i, item))
    if not prompts:
        types = sorted({str(item.get("type")) for item in result})
        raise _refuse("context.result", f"has no positive rectangle (region types: {', '.join(types)}); segpipe's "
                                        "box-to-mask answers a rectangle drawn with the smart RectangleLabels tool")
    index, region = prompts[-1]
    return _prompt(region, f"context.result[{index}]")


def _prompt(region: dict[str, Any], where: str) -> BoxPrompt:
    value = region.get("value")
    if not isinstance(value, dict):
        raise _refuse(f"{where}.value", "must be an object with x, y, width and height")
    x, y = _number(value.get("x"), f"{where}.value.x"), _number(value.get("y"), f"{where}.value.y")
    w, h = _number(value.get("width"), f"{where}.value.width"), _number(value.get("height"), f"{where}.value.height")
    if w <= 0 or h <= 0:
        raise _refuse(f"{where}.value", f"width and height must be positive, got {w:g} × {h:g} percent")
    rotation = _number(value.get("rotation", 0) or 0, f"{where}.value.rotation")
    if rotation % 360:
        x, y, w, h = _upright(x, y, w, h, rotation, region, where)
    if not all(math.isfinite(v) for v in (x, y, x + w, y + h)):
        raise _refuse(f"{where}.value", "x, y, width and height are too large to place on the image")
    if x >= 100 or y >= 100 or x + w <= 0 or y + h <= 0:
        raise _refuse(f"{where}.value", f"box x={x:g}, y={y:g}, width={w:g}, height={h:g} (percent) lies outside the image")
    labels = value.get("rectanglelabels", value.get("labels"))
    if labels is not None and (not isinstance(labels, list) or not all(isinstance(v, str) for v in labels)):
        raise _refuse(f"{where}.value.rectanglelabels", f"must be a list of label names, got {labels!r:.80}")
    return BoxPrompt((x, y, w, h), labels[0] if labels else None, _text(region.get("from_name"), f"{where}.from_name"),
                     _text(region.get("to_name"), f"{where}.to_name"), _text(region.get("id"), f"{where}.id"))


def _upright(x: float, y: float, w: float, h: float, rotation: float, region: dict[str, Any],
             where: str) -> tuple[float, float, float, float]:
    """The upright box around a rectangle rotated by ``rotation`` degrees (clockwise, about its top-left
    corner), in percent. Rotation happens in pixels, so the image's size must be known."""
    width = _number(region.get("original_width"), f"{where}.original_width")
    height = _number(region.get("original_height"), f"{where}.original_height")
    if width <= 0 or height <= 0:
        raise _refuse(where, f"original_width and original_height must be positive, got {width:g} × {height:g}")
    cos, sin = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    px, py, pw, ph = x * width / 100, y * height / 100, w * width / 100, h * height / 100
    xs, ys = [], []
    for dx, dy in ((0.0, 0.0), (pw, 0.0), (pw, ph), (0.0, ph)):
        xs.append(px + dx * cos - dy * sin)
        ys.append(py + dx * sin + dy * cos)
    left, top = min(xs), min(ys)
    return (100 * left / width, 100 * top / height, 100 * (max(xs) - left) / width, 100 * (max(ys) - top) / height)
