"""The shards of a predict job: child job rows, and the hand-off of the parent while they run.

A large predict job is split into child jobs (kind ``predict-shard``, ``parent_id`` = the predict
job) that the queue hands to any worker; each child has its own lease, claim and resume like every
job (`segpipe.stores.jobs`). While its shards run, the parent stays ``running`` with its lease held
by the pseudo-owner `SHARDS` and renewed by the shards' heartbeats; when the last shard ends, the
parent is put back on the queue (`release`) and the worker that claims it writes the combined
exports and ends it. If every shard worker died, the parent's lease expires, the reconciler
re-queues it like any orphan, and its worker re-publishes the shards still queued.

Shard ids are ``<parent id>-s<index>``: creating them twice (a parent resumed mid-split) adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from segpipe.stores.db import Store, changed
from segpipe.stores.jobs import queued_job
from segpipe.stores.models import TERMINAL_STATES, Job, utcnow

SHARDS = "shards"  # the lease owner of a parent whose shards are running (never a worker's name)
SHARD_KIND = "predict-shard"


def shard_id(parent_id: str, index: int) -> str:
    return f"{parent_id}-s{index:05d}"


class ShardStore:
    def __init__(self, store: Store, now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.now = now

    def create(self, parent: Job, configs: Sequence[str]) -> list[Job]:
        """Queued shard rows for ``configs`` (one resolved YAML each), skipping those that exist; all shards."""
        self.create_children(parent, SHARD_KIND, [(shard_id(parent.id, i), text) for i, text in enumerate(configs)])
        return self.children(parent.id)

    def create_children(self, parent: Job, kind: str, rows: Sequence[tuple[str, str]]) -> None:
        """Queued child rows of ``kind`` (``(id, resolved YAML)`` each) under ``parent``; ids that exist are
        skipped. Shards use it, and so do the nodes of a multi-node training (`segpipe.jobs.elastic`)."""
        # the same statement in both dialects: an id that exists is skipped
        skip_existing = {
            "postgresql": postgresql.insert(Job).on_conflict_do_nothing(index_elements=["id"]),
            "sqlite": sqlite.insert(Job).on_conflict_do_nothing(index_elements=["id"]),
        }[self.store.dialect]
        now = self.now()
        values = []
        for child_id, text in rows:
            job = queued_job(kind, text, parent.queue, now, job_id=child_id,
                             submitted_by=parent.submitted_by, parent_id=parent.id)
            values.append({c.key: getattr(job, c.key) for c in Job.__table__.columns})
        with self.store.write() as session:
            if values:
                session.execute(skip_existing, values)

    def children(self, parent_id: str) -> list[Job]:
        """The parent's shards in index order (detached snapshots)."""
        with self.store.read() as session:
            return list(session.scalars(select(Job).where(Job.parent_id == parent_id).order_by(Job.id)))

    def all_finished(self, parent_id: str) -> bool:
        with self.store.read() as session:
            states = session.scalars(select(Job.state).where(Job.parent_id == parent_id)).all()
        return bool(states) and all(s in TERMINAL_STATES for s in states)

    def hand_off(self, parent_id: str, owner: str, lease_seconds: float) -> bool:
        """``owner`` (the worker that split the job) gives the parent's lease to `SHARDS`."""
        now = self.now()
        with self.store.write() as session:
            return changed(session, _parent(parent_id, owner).values(
                lease_owner=SHARDS, lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)) == 1

    def renew(self, parent_id: str, lease_seconds: float) -> bool:
        """A running shard keeps its parent's lease alive (False once the parent is no longer handed off)."""
        now = self.now()
        with self.store.write() as session:
            return changed(session, _parent(parent_id, SHARDS).values(
                lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)) == 1

    def release(self, parent_id: str) -> bool:
        """Handed-off parent → queued (its message must then be published); True for exactly one caller."""
        now = self.now()
        with self.store.write() as session:
            return changed(session, _parent(parent_id, SHARDS).values(
                state="queued", lease_owner=None, lease_expires_at=None, updated_at=now)) == 1

    def advance(self, parent_id: str, progress: dict[str, Any], monotone: Sequence[str] = ()) -> bool:
        """Merge ``progress`` into the handed-off parent's; keys in ``monotone`` only ever grow (shards
        report counts read at different moments, and the later write may carry the smaller one)."""
        now = self.now()
        with self.store.write() as session:
            current = session.scalar(select(Job.progress).where(
                Job.id == parent_id, Job.lease_owner == SHARDS, Job.state == "running").with_for_update())
            if current is None:
                return False
            merged = {**current, **progress}
            for key in monotone:
                if isinstance(current.get(key), (int, float)) and key in progress:
                    merged[key] = max(current[key], progress[key])
            return changed(session, _parent(parent_id, SHARDS).values(progress=merged, updated_at=now)) == 1


def _parent(parent_id: str, owner: str) -> Any:
    return (update(Job).where(Job.id == parent_id, Job.lease_owner == owner, Job.state == "running")
            .execution_options(synchronize_session=False))
