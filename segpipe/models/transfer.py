"""Transfer learning: load a model trained on other classes, keeping every tensor that fits.

``model.weights`` names a whole model (torchvision's COCO Mask R-CNN, an ImageNet classifier, an smp
model, a segpipe run). Tensors are matched by name and shape:

- **loaded**: same name, same shape;
- **re-initialised**: a tensor of a *class-dependent* layer (the model family's ``heads``: box and mask
  predictors, the classifier ``fc``, the segmentation head) whose shape differs, because the file was
  trained for another number of classes — or that the file does not have; it keeps the builder's fresh
  initialisation (the one torchvision/smp give that layer);
- **ignored**: file tensors the model has no place for and that carry nothing to learn: batch-norm step
  counters (a model with frozen batch norm has none) and the family's ``ignorable`` parts (e.g. the
  mask head of a Mask R-CNN file loaded into a Faster R-CNN);
- anything else that does not fit is an error that lists it, and nothing is loaded.

``strict=True`` keeps the all-or-nothing rule: every tensor must fit, nothing is re-initialised.

Key layouts understood: a plain state dict; one wrapped under ``state_dict`` or ``model`` (segpipe,
torchvision reference scripts, Lightning-style checkpoints); keys prefixed by ``module.`` (DDP /
DataParallel) or ``model.``. torchvision and smp files use the same names as the models segpipe builds
(segpipe builds the torchvision/smp modules themselves), so they load as they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segpipe.errors import WeightsError
from segpipe.models.weights import mismatch_message
from segpipe.vocabulary import RunFiles

_STEP_COUNTER = "num_batches_tracked"
_WRAPPER_PREFIXES = ("module.", "model.")
_SHOWN = 10


@dataclass(frozen=True)
class HeadSpec:
    """The class-dependent layers of a model family (key prefixes of its state dict).

    heads:     tensors under these prefixes are re-initialised when their shape differs from the file's
               (another class count) or the file lacks them.
    ignorable: file tensors under these prefixes that the model lacks are ignored, not an error.
    """

    heads: tuple[str, ...] = ()
    ignorable: tuple[str, ...] = ()


@dataclass
class LoadReport:
    """What a weights file gave the model: tensor names, with the reason for each one not loaded."""

    source: str
    loaded: list[str] = field(default_factory=list)
    reinitialised: dict[str, str] = field(default_factory=dict)  # partly kept: see label_rows
    ignored: dict[str, str] = field(default_factory=dict)
    wrapping: str | None = None  # e.g. "prefix 'module.' removed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "wrapping": self.wrapping,
            "loaded": len(self.loaded),
            "reinitialised": self.reinitialised,
            "ignored": self.ignored,
            "loaded_tensors": self.loaded,
        }

    def summary(self) -> str:
        """A few lines for a terminal or a log."""
        lines = [
            f"weights {self.source}: {len(self.loaded)} tensors loaded, {len(self.reinitialised)} "
            f"re-initialised, {len(self.ignored)} ignored" + (f" ({self.wrapping})" if self.wrapping else "")
        ]
        lines += [f"  re-initialised {k}: {why}" for k, why in self.reinitialised.items()]
        shown = list(self.ignored.items())
        lines += [f"  ignored {k}: {why}" for k, why in shown[:_SHOWN]]
        if len(shown) > _SHOWN:
            lines.append(f"  … and {len(shown) - _SHOWN} more ignored")
        return "\n".join(lines)

    def save(self, folder: str | Path) -> Path:
        """Write ``load_report.json`` into `folder` (a run directory); returns its path."""
        path = Path(folder) / RunFiles.LOAD_REPORT
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path


def transfer_weights(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    heads: HeadSpec = HeadSpec(),
    strict: bool = False,
    label_rows: LabelRows | None = None,
) -> LoadReport:
    """Load what fits of `state` into `model` (in place) and say what happened (see the module doc).

    label_rows: when both the file and the model know their categories (a segpipe checkpoint, a run
    with a category map), the re-initialised heads keep the file's rows of the categories both have
    — fine-tuning a production model after categories were added keeps what it knew about the old ones.

    Raises WeightsError, before changing the model, when anything outside the class-dependent layers
    does not fit (or anything at all, with ``strict``)."""
    expected = model.state_dict()
    state, wrapping = _unwrap(state, expected)
    report = LoadReport(source=source, wrapping=wrapping)
    missing, unexpected, shapes = [], [], []
    for key in sorted(state.keys() & expected.keys()):
        file_shape, model_shape = tuple(state[key].shape), tuple(expected[key].shape)
        if file_shape == model_shape:
            report.loaded.append(key)
        elif key.startswith(heads.heads) and not strict:
            report.reinitialised[key] = f"class-dependent layer: file {file_shape} vs model {model_shape}"
        else:
            shapes.append(f"{key}: file {file_shape} vs model {model_shape}")
    for key in sorted(expected.keys() - state.keys()):
        if key.endswith(_STEP_COUNTER):
            continue  # a fresh counter is harmless
        if key.startswith(heads.heads) and not strict:
            report.reinitialised[key] = "class-dependent layer not in the file"
        else:
            missing.append(key)
    for key in sorted(state.keys() - expected.keys()):
        if key.endswith(_STEP_COUNTER):
            report.ignored[key] = "batch-norm step counter; the model's batch norm is frozen"
        elif key.startswith(heads.ignorable) and not strict:
            report.ignored[key] = "the model has no such layer (a part of the other architecture)"
        else:
            unexpected.append(key)
    if shapes or missing or unexpected or not report.loaded:
        hint = ""
        if strict and heads.heads and any(s.startswith(heads.heads) for s in shapes):
            hint = " (model.strict is true; set it to false to re-initialise the class-dependent layers)"
        raise WeightsError(
            mismatch_message(source, state, expected, missing=missing, unexpected=unexpected, shapes=shapes, hint=hint)
        )
    model.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    if label_rows is not None:
        _copy_label_rows(model, state, report, label_rows)
    return report


@dataclass(frozen=True)
class LabelRows:
    """Model label → file label for the categories both know; `model_labels` / `file_labels`: counts."""

    pairs: dict[int, int]
    model_labels: int
    file_labels: int


def label_rows(file_map: Mapping[str, Any], model_map: Any) -> LabelRows | None:
    """The label correspondence of two category maps (`CategoryMap.to_dict()` of the file, the model's
    `CategoryMap`) by original category id; background (label 0 with offset 1) maps to background."""
    ids = [int(i) for i in file_map.get("ids", [])]
    file_offset = int(file_map.get("offset", 1))
    if file_offset != model_map.offset:
        return None
    pairs = {0: 0} if model_map.offset else {}
    for label, cid in enumerate(model_map.ids, start=model_map.offset):
        if cid in ids:
            pairs[label] = ids.index(cid) + file_offset
    return LabelRows(pairs, model_map.num_labels, len(ids) + file_offset)


def _copy_label_rows(model: nn.Module, state: Mapping[str, torch.Tensor], report: LoadReport, rows: LabelRows) -> None:
    """Copy, into each re-initialised head tensor, the file's rows of the labels both sides know (a row
    block per label: 1 row for logits, 4 for box regressions)."""
    own = model.state_dict()
    kept = sorted(rows.pairs)
    for key in list(report.reinitialised):
        if key not in state:
            continue
        new, old = own[key], state[key]
        if (new.shape[1:] != old.shape[1:] or new.shape[0] % rows.model_labels
                or old.shape[0] % rows.file_labels):
            continue
        per = new.shape[0] // rows.model_labels
        if per != old.shape[0] // rows.file_labels:
            continue
        with torch.no_grad():
            for label, file_label in rows.pairs.items():
                new[label * per : (label + 1) * per] = old[file_label * per : (file_label + 1) * per]
        report.reinitialised[key] += f"; rows of labels {kept} copied from the file's (same category ids)"


def _unwrap(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], str | None]:
    """Remove a ``module.``/``model.`` prefix that every key of the file carries and the model's do not."""
    state = dict(state)
    for prefix in _WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in expected):
            return {k[len(prefix) :]: v for k, v in state.items()}, f"prefix {prefix!r} removed"
    return state, None
