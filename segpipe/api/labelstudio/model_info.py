"""The model a Label Studio project is connected to: ``/ls/NAME@production/`` (or ``@latest``, ``@3``).

The version is resolved on every request (a promotion takes effect at once) and answered as
``model_version`` ("NAME@N"). Its classes come from the ``categories.json`` saved beside its
checkpoint: the API reads that file, it never loads the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from segpipe.api.errors import ApiError
from segpipe.errors import ConfigError
from segpipe.jobs.model_refs import resolve_version
from segpipe.jobs.specs import version_ref
from segpipe.run_files import version_categories
from segpipe.stores import Stores


@dataclass(frozen=True)
class ModelInfo:
    ref: str
    name: str
    version: int
    task: str
    categories: list[tuple[int, str]]  # (original id, name) in label order

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def class_names(self) -> list[str]:
        return [name for _id, name in self.categories]


def resolve_model(stores: Stores, ref: str) -> ModelInfo:
    """404 naming the known models when ``ref`` names no version; 422 when its classes cannot be read."""
    if version_ref(ref) is None:
        raise ApiError(404, f"{ref!r} is not a model version reference: use NAME@production, NAME@latest or NAME@N "
                            "in the ML backend URL (/ls/NAME@production/)")
    try:
        version = resolve_version(ref, stores)
    except ConfigError:
        known = sorted({v.name for v in stores.versions.list()})
        raise ApiError(404, f"model {ref} has no such version; models: {', '.join(known) or 'none'}") from None
    if version is None:
        raise ApiError(404, f"model {ref} has no such version")
    try:
        categories = version_categories(stores, version)
    except ConfigError as e:  # no checkpoint, or no categories.json beside it
        raise ApiError(422, str(e)) from None
    return ModelInfo(ref, version.name, version.version, version.task, categories)
