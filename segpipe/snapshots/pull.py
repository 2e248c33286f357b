"""Pull: read a source with its registered reader and store what it holds as a snapshot."""

from __future__ import annotations

from segpipe.snapshots.formats import SNAPSHOT_FORMATS, PullContext
from segpipe.snapshots.store import Snapshot, SnapshotStore


def pull(store: SnapshotStore, format: str, source: str, ctx: PullContext) -> tuple[Snapshot, bool]:
    """Read ``source`` as ``format`` (a name in SNAPSHOT_FORMATS) into a snapshot; (snapshot, new)."""
    reader = SNAPSHOT_FORMATS.get(format)
    draft = reader(source, ctx)
    return store.write(draft, source=f"{format}:{source}", format=format)
