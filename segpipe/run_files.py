"""The small files a training run writes beside its checkpoints, read without loading the model.

A run folder holds ``config.yaml`` (the resolved config: its ``task``), ``categories.json`` (the label ↔
dataset-id map) and ``best.pt`` / ``last.pt``. Processes that only need a model's task and classes (the
API's exports and Label Studio routes, the retrain gate, ``segpipe data``) read the first two here and
never import torch; only a worker that predicts loads a checkpoint.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from segpipe.data.categories import CategoryMap
from segpipe.errors import ConfigError
from segpipe.vocabulary import RunFiles

if TYPE_CHECKING:
    from segpipe.stores import Stores
    from segpipe.stores.models import ModelVersion


def resolve_checkpoint(model_ref: str | Path) -> Path:
    """A run directory (its best.pt, else last.pt) or a checkpoint file."""
    ref = Path(model_ref)
    if ref.is_dir():
        for name in (RunFiles.BEST, RunFiles.LAST):
            if (ref / name).is_file():
                return ref / name
        raise ConfigError(f"{ref}: run directory has no {RunFiles.BEST} or {RunFiles.LAST}")
    if not ref.is_file():
        raise ConfigError(f"{ref}: no such run directory or checkpoint")
    return ref


def read_categories(path: Path) -> list[tuple[int, str]]:
    """(original id, name) of every class in a ``categories.json``, in label order."""
    cmap = CategoryMap.load(path)
    return list(zip(cmap.ids, cmap.names, strict=True))


def version_categories_file(stores: Stores, checkpoint: str) -> Path:
    """The ``categories.json`` beside a model version's checkpoint (absolute, or relative to the artifact
    root as versions store it; from an object-store root it is downloaded). The path may not exist."""
    beside = PurePosixPath(checkpoint).parent / RunFiles.CATEGORIES
    if beside.is_absolute():
        return Path(beside)
    local = stores.artifacts.root / beside
    if not local.is_file() and stores.artifacts.remote is not None:
        from segpipe.stores.artifacts import ArtifactPathError

        try:
            return stores.artifacts.fetch_from_root(str(beside))
        except ArtifactPathError:  # not under jobs/<id>/: nothing to download it from
            return local
    return local


def version_categories(stores: Stores, version: ModelVersion) -> list[tuple[int, str]]:
    """A model version's classes, from the run's ``categories.json``; `ConfigError` naming the version
    when it has no checkpoint or the file is missing."""
    label = f"model {version.name}@{version.version}"
    if not version.checkpoint:
        raise ConfigError(f"{label} has no checkpoint")
    path = version_categories_file(stores, version.checkpoint)
    if not path.is_file():
        raise ConfigError(f"{label}: {path} is missing; it names the classes")
    return read_categories(path)
