"""Pretrained weights by name, from the libraries' own catalogues: one registry of weight sources.

``model.weights`` and ``model.backbone_weights`` take, besides a file, a run or a model version:

=================================================  ==============================================
name                                               what it is
=================================================  ==============================================
``torchvision:MaskRCNN_ResNet50_FPN_Weights.COCO_V1``  a torchvision weights enum entry
``torchvision:DEFAULT``                            the model's default weights (model.weights of a
                                                   model torchvision builds under the same name)
``smp:resnet34/imagenet``                          an smp encoder's pretrained weights (encoder /
                                                   weight name as smp lists them)
=================================================  ==============================================

A source turns a name into a `RemoteWeights`: the URL the library itself would download, where the
file is kept (``weights/<source>/<file>`` in the artifact store, `segpipe.pretrained.store`) and
how its bytes are checked:

- torchvision: the file name carries the first hex digits of the file's sha256 (torch.hub's
  ``check_hash`` convention, ``resnet50-11ad3fa6.pth``);
- smp (0.5+): the weights live on the Hugging Face hub at a pinned revision; the hub gives the LFS
  file's sha256 as its ETag, which is recorded at download and checked on every load.

Nothing is imported or evaluated from a name beyond looking it up in these catalogues; an unknown name
lists the options.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from segpipe.errors import ConfigError
from segpipe.registry import Registry

Role = Literal["weights", "backbone_weights"]
_NAMED = re.compile(r"^(?P<source>[a-z][a-z0-9_-]*):(?P<name>[^/\\:][^:]*)$")
# torch.hub.HASH_REGEX: the sha256 prefix in a torchvision file name ("resnet50-11ad3fa6.pth").
_HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")
_HF_HOST = "https://huggingface.co"


@dataclass(frozen=True)
class RemoteWeights:
    """One catalogue entry, resolved.

    ref:        the name as written in the config (``torchvision:ResNet50_Weights.IMAGENET1K_V2``).
    url:        where the library downloads it from.
    key:        its place under the weights folder of the artifact store (``torchvision/resnet50-….pth``).
    sha256_prefix: the hash prefix the file name carries (torchvision), else None.
    checksum_header: the file's sha256 comes from the download host's ETag (Hugging Face hub).
    """

    ref: str
    url: str
    key: str
    sha256_prefix: str | None = None
    checksum_header: bool = False


@dataclass(frozen=True)
class WeightSource:
    """lookup(name, model name, role) → RemoteWeights; ConfigError naming the options when unknown.
    example: a name to show in messages."""

    lookup: Callable[[str, str | None, Role], RemoteWeights]
    example: str


WEIGHT_SOURCES: Registry[WeightSource] = Registry("weight source")


def is_named(ref: object) -> bool:
    """``source:name`` for a registered source (as opposed to a path, a run or a model version)."""
    if not isinstance(ref, str):
        return False
    found = _NAMED.match(ref)
    return found is not None and found.group("source") in WEIGHT_SOURCES


def lookup(ref: str, *, model: str | None = None, role: Role = "weights") -> RemoteWeights:
    """The catalogue entry `ref` names (`model`: the config's model.name, for ``torchvision:DEFAULT``)."""
    found = _NAMED.match(ref)
    if found is None:
        raise ConfigError(f"model.{role}: {ref!r} is not a weights name (SOURCE:NAME, e.g. "
                          f"{', '.join(e.obj.example for e in WEIGHT_SOURCES)})")
    source = WEIGHT_SOURCES.get(found.group("source"))
    return source.lookup(found.group("name"), model, role)


# ------------------------------------------------------------------------------------------ torchvision


def _torchvision(name: str, model: str | None, role: Role) -> RemoteWeights:
    from torchvision.models import get_model_weights, get_weight, list_models

    if name == "DEFAULT":
        if role != "weights" or model is None or model not in list_models():
            raise ConfigError(
                f"model.{role}: torchvision:DEFAULT names the default weights of a model torchvision builds "
                f"under the same name (model.weights of e.g. maskrcnn_resnet50_fpn, resnet50)"
                + (f"; {model!r} is not one" if model else "")
                + "; name the weights instead, e.g. torchvision:ResNet50_Weights.IMAGENET1K_V2"
            )
        entry = get_model_weights(model).DEFAULT
    else:
        try:
            entry = get_weight(name)
        except (ValueError, KeyError):
            enum_name = name.split(".")[0]
            known = _torchvision_entries(enum_name)
            hint = f"; {enum_name} has {', '.join(known)}" if known else (
                "; names look like ResNet50_Weights.IMAGENET1K_V2 or MaskRCNN_ResNet50_FPN_Weights.COCO_V1")
            raise ConfigError(f"model.{role}: torchvision:{name}: not in torchvision's weights catalogue{hint}") from None
    url = str(entry.url)
    file_name = url.rsplit("/", 1)[-1]
    prefix = _HASH_IN_NAME.search(file_name)
    if prefix is None or not prefix.group(1):
        raise ConfigError(f"model.{role}: torchvision:{name}: {url} carries no checksum in its name; refused")
    # DEFAULT is recorded as the entry it stands for today (it may change with torchvision's version)
    return RemoteWeights(ref=f"torchvision:{type(entry).__name__}.{entry.name}", url=url,
                         key=f"torchvision/{file_name}", sha256_prefix=prefix.group(1))


def _torchvision_entries(enum_name: str) -> list[str]:
    import torchvision.models as tvm

    for module in (tvm, tvm.detection, tvm.segmentation, tvm.quantization, tvm.video, tvm.optical_flow):
        enum = getattr(module, enum_name, None)
        if enum is not None and hasattr(enum, "__members__"):
            return [f"{enum_name}.{m}" for m in enum.__members__]
    return []


WEIGHT_SOURCES.add("torchvision", WeightSource(_torchvision, "torchvision:ResNet50_Weights.IMAGENET1K_V2"),
                   description="torchvision's weights enums (torchvision.models.get_weight), or DEFAULT")


# ------------------------------------------------------------------------------------------------ smp


def _smp(name: str, model: str | None, role: Role) -> RemoteWeights:
    from segmentation_models_pytorch.encoders import encoders

    encoder, _, weights = name.partition("/")
    if role != "backbone_weights":
        raise ConfigError(f"model.{role}: smp:{name} are encoder weights: give them as model.backbone_weights")
    if encoder not in encoders:
        raise ConfigError(f"model.{role}: smp:{name}: unknown smp encoder {encoder!r}; known: "
                          f"{', '.join(sorted(k for k, v in encoders.items() if v.get('pretrained_settings')))}")
    settings = encoders[encoder].get("pretrained_settings") or {}
    if weights not in settings:
        raise ConfigError(f"model.{role}: smp:{name}: encoder {encoder!r} has weights "
                          f"{', '.join(f'{encoder}/{w}' for w in settings) or '(none)'}")
    entry = settings[weights]
    if "repo_id" not in entry:
        raise ConfigError(f"model.{role}: smp:{name}: this smp version gives no hub repository for it")
    repo, revision = entry["repo_id"], entry.get("revision", "main")
    url = f"{_HF_HOST}/{repo}/resolve/{revision}/model.safetensors"
    key = f"smp/{repo.replace('/', '--')}--{revision[:12]}.safetensors"
    return RemoteWeights(ref=f"smp:{name}", url=url, key=key, checksum_header=True)


WEIGHT_SOURCES.add("smp", WeightSource(_smp, "smp:resnet34/imagenet"),
                   description="segmentation-models-pytorch encoder weights (ENCODER/WEIGHTS, from the Hugging Face hub)")
