"""Snapshots in the artifact root: ``<root>/snapshots/<id>/`` holds ``annotations.json`` (COCO),
``images/`` and ``snapshot.json`` (what it is: source, counts, hash, time).

A snapshot's id is the start of its content hash: the SHA-256 of the normalised COCO together with
the SHA-256 of every image's bytes. Source and time stay out of it, so pulling unchanged annotations
again yields the same snapshot (and a retrain can skip), and a snapshot once written never changes:
it is written in a temporary folder and renamed into place, and writing an existing id writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from segpipe.errors import NotFoundError
from segpipe.settings import SNAPSHOTS_DIR
from segpipe.snapshots.draft import Draft

ID_LENGTH = 16
MANIFEST = "snapshot.json"


@dataclass(frozen=True)
class Snapshot:
    id: str
    sha256: str
    source: str  # what it was pulled from, for people: "cvat-mask:/data/exports/task12.zip"
    format: str
    images: int
    annotations: int
    categories: list[str]
    created_at: str  # ISO 8601, UTC
    path: str  # the snapshot's folder


def content_hash(coco: dict[str, Any], image_hashes: dict[str, str]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(coco, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(image_hashes):
        digest.update(f"\n{name}\t{image_hashes[name]}".encode())
    return digest.hexdigest()


class SnapshotStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve() / SNAPSHOTS_DIR

    def write(self, draft: Draft, *, source: str, format: str) -> tuple[Snapshot, bool]:
        """Store a draft; returns the snapshot and whether it is new (False: the same data was there)."""
        coco = draft.to_coco()
        image_hashes = {name: hashlib.sha256(image.data).hexdigest() for name, image in draft.images.items()}
        sha = content_hash(coco, image_hashes)
        folder = self.root / sha[:ID_LENGTH]
        if (folder / MANIFEST).is_file():
            return self.get(sha[:ID_LENGTH]), False
        self.root.mkdir(parents=True, exist_ok=True)
        snapshot = Snapshot(id=sha[:ID_LENGTH], sha256=sha, source=source, format=format, images=len(draft.images),
                            annotations=len(coco["annotations"]), categories=list(draft.categories),
                            created_at=datetime.now(UTC).isoformat(timespec="seconds"), path=str(folder))
        staging = Path(tempfile.mkdtemp(prefix=f".{snapshot.id}-", dir=self.root))
        try:
            for name, image in draft.images.items():
                target = staging / "images" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(image.data)
            (staging / "annotations.json").write_text(json.dumps(coco))
            (staging / MANIFEST).write_text(json.dumps(asdict(snapshot), indent=2))
            try:
                os.rename(staging, folder)
            except OSError:  # another writer stored the same content first: theirs stands
                if not (folder / MANIFEST).is_file():
                    raise
                return self.get(snapshot.id), False
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return snapshot, True

    def get(self, snapshot_id: str) -> Snapshot:
        if not (len(snapshot_id) == ID_LENGTH and all(c in "0123456789abcdef" for c in snapshot_id)):
            raise NotFoundError(f"no snapshot {snapshot_id!r}: ids are {ID_LENGTH} hex digits")
        manifest = self.root / snapshot_id / MANIFEST
        if not manifest.is_file():
            raise NotFoundError(f"no snapshot {snapshot_id!r} under {self.root}")
        data = json.loads(manifest.read_text())
        data["path"] = str(manifest.parent)
        return Snapshot(**data)

    def list(self) -> list[Snapshot]:
        """Every snapshot, newest first."""
        if not self.root.is_dir():
            return []
        found = [self.get(p.name) for p in self.root.iterdir() if (p / MANIFEST).is_file() and len(p.name) == ID_LENGTH]
        return sorted(found, key=lambda s: (s.created_at, s.id), reverse=True)
