"""Offline weights: read a local state dict safely and load it into a model or its backbone.

Formats:
- ``*.safetensors`` — read with ``safetensors.torch.load_file`` (tensors only, by construction);
- anything else — a torch file read with ``torch.load(path, map_location="cpu", weights_only=True)``.
  A segpipe checkpoint (a dict with a ``"model"`` state dict beside optimizer state etc.) is accepted,
  as is a dict with a ``"state_dict"`` entry. A file that weights-only loading refuses (it pickles
  arbitrary Python objects) is rejected with the reason; there is never a fallback to unsafe loading.

A segpipe run directory stands for its ``best.pt`` (else ``last.pt``). Pickle formats that run code
when loaded are refused with what to convert them to: Detectron2 ``.pkl`` files, and whole models
saved with ``torch.save(model)`` (weights-only loading refuses their classes).

Nothing here downloads: a path that does not exist is an error naming the path. Pretrained weights by
name (``torchvision:…``, ``smp:…``) are turned into checked local files by `segpipe.pretrained` first.

Backbone weights (``model.backbone_weights`` in a config) go into one submodule per model family,
described by a :class:`BackboneSpec` registered with the model (see ``segpipe.models.registry``):

==========================  =================  ===============================================
family                      submodule          accepted files
==========================  =================  ===============================================
cnn_small                   ``features``       its own conv stack
torchvision resnets         the whole model    ImageNet resnet state dict; ``fc.*`` skipped
torchvision mobilenet_v3    ``features``       ImageNet mobilenet state dict (``features.*``)
smp unet/fpn/...            ``encoder``        smp encoder or ImageNet state dict; heads skipped
Mask/Faster R-CNN (resnet)  ``backbone.body``  ImageNet resnet state dict; ``fc.*`` skipped
Faster R-CNN mobilenet      ``backbone.body``  ImageNet mobilenet_v3_large (``features.*``)
==========================  =================  ===============================================

In every family a full-model file of the same architecture works too: its keys under the submodule's
path (e.g. ``encoder.``) are taken, the rest ignored.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segpipe.config import VERSION_REF
from segpipe.errors import WeightsError
from segpipe.vocabulary import RunFiles

_SHOWN = 10  # keys listed per kind of mismatch; the count says how many there are in all
# BatchNorm's step counter: absent from FrozenBatchNorm2d and from old checkpoints, harmless either way.
_IGNORED_SUFFIX = "num_batches_tracked"


@dataclass(frozen=True)
class BackboneSpec:
    """Where a model family's backbone weights go.

    path:            dotted submodule name (``""`` = the model itself).
    source_prefixes: key prefixes stripped from a file that is some bigger model's state dict (e.g.
                     ``"features."`` for an ImageNet mobilenet); tried after ``path + "."``.
    skip:            key prefixes (relative to the submodule) that are never loaded and never missed:
                     classification heads whose size depends on the number of labels.
    """

    path: str
    source_prefixes: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()


_PICKLE_SUFFIXES = (".pkl", ".pickle")
_RUN_CHECKPOINTS = (RunFiles.BEST, RunFiles.LAST)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict (name → CPU tensor) from a safetensors or torch file, or a segpipe run
    directory. Raises WeightsError."""
    return read_weights(path)[0]


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """`read_state_dict`, plus the category map a segpipe checkpoint carries (None for other files):
    fine-tuning uses it to keep the head rows of the categories both models know."""
    if isinstance(path, str) and VERSION_REF.match(path):
        raise WeightsError(
            f"{path}: a model version; it is resolved to its checkpoint by `segpipe train` and by queued jobs "
            f"(they open the version store): build_model takes the checkpoint path"
        )
    path = Path(path)
    if path.is_dir():
        found = next((path / n for n in _RUN_CHECKPOINTS if (path / n).is_file()), None)
        if found is None:
            raise WeightsError(f"{path}: a directory, but not a segpipe run (no {' or '.join(_RUN_CHECKPOINTS)})")
        path = found
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise WeightsError(
            f"{path}: refused: a .pkl file (e.g. a Detectron2 checkpoint) is a Python pickle that can run "
            f"code when it is loaded, so segpipe never opens it. Convert it, where you trust it, to a "
            f"torchvision-layout state dict saved as .safetensors (safetensors.torch.save_file) or with "
            f"torch.save(state_dict), and name that file."
        )
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu"), None
        except (SafetensorError, OSError) as e:
            raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None
    obj = _torch_load(path)
    cmap = obj.get("category_map") if isinstance(obj, Mapping) else None
    return _state_dict_of(obj, path), dict(cmap) if isinstance(cmap, Mapping) else None


def load_weights(
    model: nn.Module,
    path: str | Path,
    *,
    strict: bool = True,
    prefix: str | None = None,
    skip: tuple[str, ...] = (),
) -> None:
    """Load a weights file into `model` (in place).

    prefix: take only the file's keys that start with it, with the prefix removed (e.g. ``"encoder."``
            to load the encoder part of a full checkpoint into ``model.encoder``).
    skip:   key prefixes (after `prefix` is removed) neither loaded nor required.
    strict: missing or unexpected keys are an error; shape mismatches always are. Nothing is loaded
            when an error is raised.
    """
    state = read_state_dict(path)
    _load_into(model, state, source=str(path), prefix=prefix, skip=skip, strict=strict)


def load_backbone_weights(model: nn.Module, path: str | Path, spec: BackboneSpec) -> None:
    """Load a weights file into the backbone submodule of `model` named by `spec` (see module doc)."""
    target = model.get_submodule(spec.path) if spec.path else model
    state = read_state_dict(path)
    candidates = ((spec.path + ".",) if spec.path else ()) + spec.source_prefixes
    prefix = next((p for p in candidates if any(k.startswith(p) for k in state)), None)
    where = f"{path} (into {spec.path or 'the model'})"
    _load_into(target, state, source=where, prefix=prefix, skip=spec.skip, strict=True)


# ------------------------------------------------------------------------------------------- internals


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        found = re.search(r"WeightsUnpickler error:(.*?)(Check the documentation|$)", text, re.DOTALL)
        why = " ".join((found.group(1) if found else text).split()).split(" Please use ")[0]
        if "Unsupported global" in why:
            raise WeightsError(
                f"{path}: refused: the file pickles Python objects that safe (weights_only) loading does "
                f"not allow ({why}); a whole model saved with torch.save(model) is such a file. Save a "
                f"plain state dict instead (torch.save(model.state_dict(), path)) or use .safetensors."
            ) from None
        raise WeightsError(f"{path}: not a readable torch file ({why or 'unpickling failed'})") from None
    except Exception as e:  # noqa: BLE001 - torch raises a zoo of types for corrupt files (KeyError, EOFError, ...)
        raise WeightsError(f"{path}: not a readable torch file ({type(e).__name__}: {e})") from None


def _state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):  # a checkpoint wrapping the state dict
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: expected a state dict (name → tensor), got {type(obj).__name__}")
    bad = [f"{k!s} ({type(v).__name__})" for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(
            f"{path}: a state dict maps names to tensors; {len(bad)} entries are not tensors: {_listing(bad)}"
        )
    if not obj:
        raise WeightsError(f"{path}: holds no tensors")
    return {str(k): v for k, v in obj.items()}


def _load_into(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    prefix: str | None,
    skip: tuple[str, ...],
    strict: bool,
) -> None:
    """Check `state` against `module` completely, then load it; raise WeightsError before loading."""
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    state = {k: v for k, v in state.items() if not (skip and k.startswith(skip))}
    expected = {k: v for k, v in module.state_dict().items() if not (skip and k.startswith(skip))}

    def counted(keys: set[str]) -> list[str]:
        return sorted(k for k in keys if not k.endswith(_IGNORED_SUFFIX))

    missing = counted(expected.keys() - state.keys())
    unexpected = counted(state.keys() - expected.keys())
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(state.keys() & expected.keys())
        if state[k].shape != expected[k].shape
    ]
    if shapes or (strict and (missing or unexpected)) or not (state.keys() & expected.keys()):
        note = f"keys taken under prefix {prefix!r}" if prefix else None
        raise WeightsError(
            mismatch_message(
                source, state, expected, missing=missing, unexpected=unexpected, shapes=shapes, note=note
            )
        )
    module.load_state_dict(state, strict=False)


def mismatch_message(
    source: str,
    state: Mapping[str, Any],
    expected: Mapping[str, Any],
    *,
    missing: Sequence[str] = (),
    unexpected: Sequence[str] = (),
    shapes: Sequence[str] = (),
    note: str | None = None,
    hint: str = "",
) -> str:
    """The "weights do not fit the model" message of every loader (strict here, lenient in `transfer`).

    state / expected: the file's and the model's state dicts as compared (after any prefix removal).
    missing / unexpected: key names; shapes: ``"key: file (…) vs model (…)"`` lines. Each list shows its
    first few entries and its count. note: said first (how the keys were taken); hint: appended as is.
    """
    parts = [note] if note else []
    if not (state.keys() & expected.keys()):
        parts.append(f"none of the file's {len(state)} keys match the model's {len(expected)}")
    if missing:
        parts.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches: {_listing(shapes)}")
    return f"{source}: weights do not fit the model; " + "; ".join(parts) + hint


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f", … (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")
