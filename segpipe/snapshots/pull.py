"""Pull: read a source with its registered reader and store what it holds as a snapshot."""

from __future__ import annotations

from pathlib import Path

from segpipe.snapshots.archive import Archive
from segpipe.snapshots.formats import SNAPSHOT_FORMATS
from segpipe.snapshots.store import Snapshot, SnapshotStore


def pull_archive(store: SnapshotStore, format: str, archive_path: Path) -> tuple[Snapshot, bool]:
    """Read ``archive_path`` as ``format`` (a name in SNAPSHOT_FORMATS) into a snapshot; (snapshot, new)."""
    reader = SNAPSHOT_FORMATS.get(format)
    with Archive(archive_path) as archive:
        draft = reader(archive)
    return store.write(draft, source=f"{format}:{archive_path}", format=format)
