"""Train / validation split of a snapshot that never moves an image from validation into training.

An image's side is a pure function of its bytes: the SHA-256 of its content, read as a number in
[0, 1), against the validation fraction. The next snapshot of the same project, with masks corrected
and images added, puts every image it shares with this one on the same side — so a gate compares
versions on a validation set that only grows, and no model ever trains on an image an earlier
version was judged on. (Changing the fraction is the one way to move images, and it is a new
schedule, not a new snapshot.)

The split is written beside the snapshot as two COCO files, ``split-<fraction>/train.json`` and
``val.json``, whose image ``file_name``s point into the snapshot's ``images/``. In an object-store
artifact root they are written in this host's copy and uploaded beside the snapshot: the split's
locations are then URIs, which any worker reads through its cache; ``local`` is this host's copy
(what the retraining tick hashes, so it need not download what it just wrote).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segpipe.errors import ConfigError
from segpipe.snapshots.store import Snapshot, SnapshotStore
from segpipe.storage.uri import Location, to_location


@dataclass(frozen=True)
class SnapshotSplit:
    images: Location  # the snapshot's images/ folder (a path, or a URI in an object-store artifact root)
    train: Location  # COCO annotations of the training side
    val: Location
    counts: dict[str, int]  # images per side
    local: tuple[Path, Path, Path]  # images, train and val on this host (the same as above for a local root)


def side_of(image_bytes: bytes, val_fraction: float) -> str:
    """"val" or "train" for an image, from its content alone."""
    position = int.from_bytes(hashlib.sha256(image_bytes).digest()[:8], "big") / 2**64
    return "val" if position < val_fraction else "train"


def split_snapshot(store: SnapshotStore, snapshot: Snapshot, val_fraction: float) -> SnapshotSplit:
    """Write (once) and return the snapshot's split for ``val_fraction`` (0 < f < 1)."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    root = store.local_copy(snapshot)
    name = f"split-{val_fraction:g}"
    folder = root / name
    train, val = folder / "train.json", folder / "val.json"
    coco = json.loads((root / "annotations.json").read_text())
    sides: dict[str, list[dict[str, Any]]] = {"train": [], "val": []}
    for image in coco["images"]:
        sides[side_of((root / "images" / image["file_name"]).read_bytes(), val_fraction)].append(image)
    if not (train.is_file() and val.is_file()):
        folder.mkdir(exist_ok=True)
        for side, images in sides.items():
            ids = {image["id"] for image in images}
            part = {**coco, "images": images, "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}
            staging = folder / f".{side}.json.tmp"
            staging.write_text(json.dumps(part))
            staging.replace(folder / f"{side}.json")
    counts = {side: len(images) for side, images in sides.items()}
    return SnapshotSplit(images=to_location(f"{snapshot.path}/images"),
                         train=to_location(store.publish(snapshot, train, f"{name}/train.json")),
                         val=to_location(store.publish(snapshot, val, f"{name}/val.json")),
                         counts=counts, local=(root / "images", train, val))
