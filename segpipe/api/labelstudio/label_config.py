"""A Label Studio project's labeling config, read and checked against a model's classes.

The XML comes from the caller, so it is treated as untrusted: bounded in size, no DOCTYPE (no entity
expansion), parsed with the standard library's expat. What segpipe needs from it: the control tag whose
regions it will answer with (BrushLabels / PolygonLabels / RectangleLabels / Choices), that tag's
``name`` (the result's ``from_name``), its ``toName`` (the Image tag), the Image tag's data key
(``value="$image"`` → ``image``) and the label values.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from segpipe.api.errors import ApiError
from segpipe.task_kinds import TRAITS, TaskTraits

MAX_CONFIG_BYTES = 256 * 1024
# control tag → (segpipe region kind, child tag holding the values), in order of preference per task
CONTROLS = {
    "BrushLabels": ("brush", "Label"),
    "PolygonLabels": ("polygon", "Label"),
    "RectangleLabels": ("rectangle", "Label"),
    "Choices": ("choices", "Choice"),
}


def _preferred(kind: TaskTraits) -> tuple[str, ...]:
    """The control tags a task's predictions fit, best first: masks paint (brush) or trace (polygon), boxes
    draw rectangles (an instance model fills all three), a classification picks a choice."""
    if kind.target == "class_id":
        return ("Choices",)
    return (("BrushLabels", "PolygonLabels") if kind.needs_masks else ()) + (
        ("RectangleLabels",) if kind.instances else ())


PREFERRED = {name: _preferred(kind) for name, kind in TRAITS.items()}


@dataclass(frozen=True)
class Control:
    """The labeling config's part segpipe fills: one control tag and the image it labels."""

    tag: str
    kind: str  # brush | polygon | rectangle | choices
    from_name: str
    to_name: str
    image_key: str  # the task data key holding the image URL
    labels: tuple[str, ...]


def parse_controls(config: str) -> list[Control]:
    """Every control tag of a labeling config that labels an Image; 422 for XML that cannot be read."""
    if len(config.encode()) > MAX_CONFIG_BYTES:
        raise ApiError(413, f"labeling config is larger than {MAX_CONFIG_BYTES // 1024} KB")
    if "<!DOCTYPE" in config.upper() or "<!ENTITY" in config.upper():
        raise ApiError(422, "labeling config: DOCTYPE and ENTITY declarations are not accepted")
    try:
        root = ET.fromstring(config)  # noqa: S314 - DOCTYPE and ENTITY are refused above, so no entity expands
    except ET.ParseError as e:
        raise ApiError(422, f"labeling config is not valid XML: {e}") from None
    images = {el.get("name"): (el.get("value") or "").lstrip("$") for el in root.iter("Image") if el.get("name")}
    found = []
    for el in root.iter():
        if el.tag not in CONTROLS:
            continue
        kind, child = CONTROLS[el.tag]
        to_name = el.get("toName") or ""
        if to_name not in images:
            continue
        labels = tuple(c.get("value") or "" for c in el.iter(child))
        found.append(Control(el.tag, kind, el.get("name") or "", to_name, images[to_name] or "image", labels))
    return found


def choose_control(config: str, task: str, model_classes: Sequence[str], model: str) -> Control:
    """The control to answer with, after checking that its labels cover the model's classes.

    422 naming both lists when they do not match; 422 naming the tags segpipe can fill when the config
    has none for the model's task kind.
    """
    controls = parse_controls(config)
    wanted = PREFERRED.get(task, ())
    usable = [c for tag in wanted for c in controls if c.tag == tag]
    if not usable:
        have = ", ".join(sorted({c.tag for c in controls})) or "none labelling an <Image>"
        raise ApiError(
            422,
            f"labeling config has no control segpipe can fill for {model} (a {task} model): it needs one of "
            f"{', '.join(wanted)} on an <Image>; the config has {have}",
        )
    classes = [c for c in model_classes if c]
    for control in usable:
        if set(classes) <= set(control.labels):
            return control
    best = usable[0]
    missing = [c for c in classes if c not in best.labels]
    raise ApiError(
        422,
        f"labeling config labels do not match the classes of {model}: the config's <{best.tag} name="
        f"\"{best.from_name}\"> has labels [{', '.join(best.labels)}], the model's classes are "
        f"[{', '.join(classes)}] (missing from the config: {', '.join(missing)})",
        detail={"config_labels": list(best.labels), "model_classes": classes, "missing": missing},
    )
