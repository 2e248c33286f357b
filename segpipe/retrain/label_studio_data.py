"""A scheduled model's data when it is bound to a Label Studio project: the project's latest snapshot.

Each check pulls the project (`segpipe.snapshots`), splits it by image content and points the entry's
training config, dataset paths and validation set at that split; from there the tick goes on as for
any model (hash, compare with the versions' data, queue). Labels map to the production version's
classes (the categories.json beside its checkpoint, in label order) and keep its category ids, so the gate
can evaluate production on the snapshot and the candidate answers with the same ids; before there is a
production version, to the labels of the project's labeling config, in the order they are written (ids 1..N).
"""

from __future__ import annotations

import re

from segpipe.errors import ConfigError
from segpipe.retrain.schedule import ModelSchedule
from segpipe.run_files import version_categories
from segpipe.settings import Settings
from segpipe.snapshots.formats import PullContext
from segpipe.snapshots.pull import pull
from segpipe.snapshots.split import split_snapshot
from segpipe.snapshots.store import Snapshot, SnapshotStore
from segpipe.stores import Stores

_LABEL = re.compile(r"<(?:Label|Choice)\b[^>]*\bvalue=\"([^\"]+)\"", re.IGNORECASE)


def entry_on_latest_snapshot(stores: Stores, settings: Settings, entry: ModelSchedule) -> tuple[ModelSchedule, Snapshot]:
    """Pull the bound project now; the entry as it trains on that snapshot's split, and the snapshot."""
    binding = entry.label_studio
    if binding is None:
        raise ValueError(f"model {entry.name} is not bound to a Label Studio project")
    production = production_categories(stores, entry.name)
    context = PullContext(settings, [name for _id, name in production], [cid for cid, _name in production]) \
        if production else PullContext(settings, project_labels(settings, binding.project))
    store = SnapshotStore.from_settings(settings)
    snapshot, _new = pull(store, "label-studio", str(binding.project), context)
    if snapshot.images == 0:
        raise ConfigError(f"Label Studio project {binding.project} has no annotated task yet")
    split = split_snapshot(store, snapshot, binding.val_fraction)
    if not split.counts["train"] or not split.counts["val"]:
        raise ConfigError(f"snapshot {snapshot.id} of project {binding.project}: {split.counts['train']} training and "
                          f"{split.counts['val']} validation images; both sides need at least one")
    return entry.on_snapshot(split.images, split.train, split.val, local=split.local), snapshot


def production_categories(stores: Stores, name: str) -> list[tuple[int, str]]:
    """The production version's classes as (COCO id, name), in label order ([] without a production version)."""
    version = stores.versions.production(name)
    if version is None or not version.checkpoint:
        return []
    return version_categories(stores, version)


def project_labels(settings: Settings, project: int) -> list[str]:
    """The labels a project's labeling config offers, in the order they are written, each once."""
    from segpipe.labelstudio.client import LabelStudioClient

    if not settings.label_studio_url or not settings.label_studio_token:
        raise ConfigError("a model bound to a Label Studio project needs SEGPIPE_LABEL_STUDIO_URL and "
                          "SEGPIPE_LABEL_STUDIO_TOKEN")
    with LabelStudioClient(settings.label_studio_url, settings.label_studio_token) as ls:
        config = str(ls.get(f"/api/projects/{project}").get("label_config") or "")
    labels = list(dict.fromkeys(_LABEL.findall(config)))
    if not labels:
        raise ConfigError(f"Label Studio project {project}: its labeling config names no labels")
    return labels
