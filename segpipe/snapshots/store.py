"""Snapshots in the artifact root: ``<root>/snapshots/<id>/`` holds ``annotations.json`` (COCO),
``images/`` and ``snapshot.json`` (what it is: source, counts, hash, time).

The artifact root may be an object store (``s3://bucket/prefix``), as for job files: a snapshot is then
built in this host's mirror (``SEGPIPE_HOME/cache/artifacts/snapshots``) and uploaded, ``snapshot.json``
last, so a snapshot whose manifest can be read is whole. Its ``path`` is then the URI, which a train
config names like any other object-store dataset: any worker on any host reads the same bytes through
its download cache (`segpipe.storage.cache`).

A snapshot's id is the start of its content hash: the SHA-256 of the normalised COCO together with
the SHA-256 of every image's bytes. Source and time stay out of it, so pulling unchanged annotations
again yields the same snapshot (and a retrain can skip), and a snapshot once written never changes:
it is written in a temporary folder and renamed into place, and writing an existing id writes nothing.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from segpipe.errors import NotFoundError
from segpipe.settings import SNAPSHOTS_DIR, Settings
from segpipe.snapshots.draft import Draft
from segpipe.storage.uri import Uri, is_uri, parse_uri

if TYPE_CHECKING:
    from segpipe.storage.cache import DownloadCache

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
    path: str  # the snapshot's folder: a local path, or its URI in an object-store artifact root


def content_hash(coco: dict[str, Any], image_hashes: dict[str, str]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(coco, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(image_hashes):
        digest.update(f"\n{name}\t{image_hashes[name]}".encode())
    return digest.hexdigest()


class SnapshotStore:
    """Snapshots under ``<artifact root>/snapshots``: a local folder, or an object-store prefix with a
    local ``mirror`` folder (where this host builds snapshots and keeps the ones it built) and a
    download ``cache`` (for the ones other hosts built)."""

    def __init__(self, root: str | Path, *, mirror: Path | None = None, cache: DownloadCache | None = None) -> None:
        self.remote: Uri | None = parse_uri(str(root), what="artifact root") / SNAPSHOTS_DIR if is_uri(root) else None
        if self.remote is not None and mirror is None:
            raise ValueError("snapshots in an object-store artifact root need a local mirror folder")
        local = mirror if self.remote is not None else Path(root)
        self.root = Path(local).expanduser().resolve() / SNAPSHOTS_DIR  # type: ignore[arg-type]
        self.cache = cache

    @classmethod
    def from_settings(cls, settings: Settings) -> SnapshotStore:
        """This process's store: the configured artifact root, with this host's mirror and cache."""
        if not is_uri(settings.artifacts):
            return cls(settings.artifacts)
        from segpipe.storage.cache import worker_cache

        return cls(settings.artifacts, mirror=settings.cache_dir / "artifacts", cache=worker_cache(settings))

    def location(self, snapshot_id: str) -> str:
        """Where snapshot ``snapshot_id`` lies for a job config: its folder, or its URI."""
        return str(self.remote / snapshot_id) if self.remote is not None else str(self.root / snapshot_id)

    def write(self, draft: Draft, *, source: str, format: str) -> tuple[Snapshot, bool]:
        """Store a draft; returns the snapshot and whether it is new (False: the same data was there)."""
        coco = draft.to_coco()
        image_hashes = {name: hashlib.sha256(image.data).hexdigest() for name, image in draft.images.items()}
        sha = content_hash(coco, image_hashes)
        snapshot_id = sha[:ID_LENGTH]
        if self._stored(snapshot_id):
            return self.get(snapshot_id), False
        folder = self.root / snapshot_id
        snapshot = Snapshot(id=snapshot_id, sha256=sha, source=source, format=format, images=len(draft.images),
                            annotations=len(coco["annotations"]), categories=list(draft.categories),
                            created_at=datetime.now(UTC).isoformat(timespec="seconds"), path=self.location(snapshot_id))
        # (a mirror copy whose upload was cut short is uploaded again)
        if not (folder / MANIFEST).is_file() and not self._build(folder, draft, coco, snapshot):
            return self.get(snapshot_id), False
        if self.remote is not None:  # the manifest last: a readable manifest means a whole snapshot
            from segpipe.storage import remote

            remote.upload_tree(folder, self.remote / snapshot_id, last=MANIFEST)
        return self.get(snapshot_id), True

    def _build(self, folder: Path, draft: Draft, coco: dict[str, Any], snapshot: Snapshot) -> bool:
        """Write the snapshot's folder (staged, then renamed); False when another writer's copy stands."""
        self.root.mkdir(parents=True, exist_ok=True)
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
                return self.remote is not None  # a remote store still uploads this host's (identical) copy
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return True

    def _stored(self, snapshot_id: str) -> bool:
        if self.remote is None:
            return (self.root / snapshot_id / MANIFEST).is_file()
        return self._remote_manifest(snapshot_id) is not None

    def _remote_manifest(self, snapshot_id: str) -> dict[str, Any] | None:
        from segpipe.storage import remote

        assert self.remote is not None
        fs = remote.filesystem(self.remote)
        try:
            return dict(json.loads(fs.cat_file((self.remote / snapshot_id / MANIFEST).key)))
        except FileNotFoundError:
            return None

    def get(self, snapshot_id: str) -> Snapshot:
        if not (len(snapshot_id) == ID_LENGTH and all(c in "0123456789abcdef" for c in snapshot_id)):
            raise NotFoundError(f"no snapshot {snapshot_id!r}: ids are {ID_LENGTH} hex digits")
        if self.remote is not None:
            data = self._remote_manifest(snapshot_id)
            if data is None:
                raise NotFoundError(f"no snapshot {snapshot_id!r} under {self.remote}")
        else:
            manifest = self.root / snapshot_id / MANIFEST
            if not manifest.is_file():
                raise NotFoundError(f"no snapshot {snapshot_id!r} under {self.root}")
            data = json.loads(manifest.read_text())
        data["path"] = self.location(snapshot_id)
        return Snapshot(**data)

    def list(self) -> list[Snapshot]:
        """Every snapshot, newest first."""
        found = [self.get(snapshot_id) for snapshot_id in self._ids()]
        return sorted(found, key=lambda s: (s.created_at, s.id), reverse=True)

    def _ids(self) -> builtins.list[str]:  # (`list` is the method above, in this class)
        if self.remote is None:
            if not self.root.is_dir():
                return []
            return [p.name for p in self.root.iterdir() if (p / MANIFEST).is_file() and len(p.name) == ID_LENGTH]
        from segpipe.storage import remote

        fs = remote.filesystem(self.remote)
        fs.invalidate_cache(self.remote.key)  # other hosts write here too: no stale listing
        manifests = fs.glob(f"{self.remote.key}/*/{MANIFEST}")
        ids = [PurePosixPath(m).parent.name for m in manifests]
        return [i for i in ids if len(i) == ID_LENGTH]

    def local_copy(self, snapshot: Snapshot) -> Path:
        """A folder on this host holding the snapshot's files: the folder itself for a local root; for an
        object store, this host's mirror copy when it built the snapshot, else a download (cached)."""
        if self.remote is None:
            return Path(snapshot.path)
        mirrored = self.root / snapshot.id
        if (mirrored / MANIFEST).is_file():
            return mirrored
        if self.cache is None:
            raise ValueError("snapshots in an object-store artifact root need a download cache to read from")
        return self.cache.folder(self.remote / snapshot.id)

    def publish(self, snapshot: Snapshot, local_file: Path, relative: str) -> str:
        """Add a derived file (a split) beside the snapshot; where a job config finds it (path or URI).
        Derived files are functions of the content, so writing one twice writes the same bytes."""
        if self.remote is None:
            return str(local_file)
        from segpipe.storage import remote

        target = self.remote / snapshot.id / relative
        remote.upload(local_file, target)
        return str(target)
