"""The retraining lock and the schedule's bookkeeping: one `RetrainSlot` row per model name.

Several beat processes (and people running ``segpipe retrain``, and the API) may try to queue a
retraining of the same model at once. `RetrainSlotStore.acquire` creates the job and points the slot
at it in one transaction, and only when the slot's previous job is no longer queued or running:

- PostgreSQL: the slot row is read ``FOR UPDATE``, so a second acquirer waits for the first to commit,
  then reads the new job id and (in a new statement, hence a new snapshot) sees that job queued. When
  there is no row yet, both insert and the primary key rejects the second, which then reports the
  winner's job.
- SQLite: write transactions take the database lock at ``BEGIN`` (`Store.write`), so acquirers run
  one after the other.

The lock is the job's own state, so it never needs releasing: it frees itself when the job ends.

`claim_check` is a compare-and-set on ``checked_at``: of several ticks that saw the same last check,
exactly one gets to check the dataset now.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from segpipe.stores.db import Store, changed
from segpipe.stores.jobs import queued_job
from segpipe.stores.models import Job, RetrainSlot, utcnow
from segpipe.vocabulary import ACTIVE_STATES


@dataclass(frozen=True)
class Acquired:
    """The outcome of `RetrainSlotStore.acquire`: ``created`` True → ``job`` is the new queued job (publish
    its message); False → ``job`` is the queued or running job that holds the lock."""

    job: Job
    created: bool


class RetrainSlotStore:
    def __init__(self, store: Store, now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.now = now

    def get(self, name: str) -> RetrainSlot | None:
        with self.store.read() as session:
            return session.get(RetrainSlot, name)

    def list(self) -> builtins.list[RetrainSlot]:
        with self.store.read() as session:
            return builtins.list(session.scalars(select(RetrainSlot).order_by(RetrainSlot.name)))

    def active_job(self, name: str) -> Job | None:
        """The retrain job of ``name`` that is queued or running, or None."""
        with self.store.read() as session:
            return _active(session, name)

    def acquire(
        self, name: str, config_text: str, queue: str, *, submitted_by: str | None = None
    ) -> Acquired:
        """Create a queued ``retrain`` job for ``name`` unless one is queued or running (see module docstring)."""
        try:
            with self.store.write() as session:
                slot = session.scalar(select(RetrainSlot).where(RetrainSlot.name == name).with_for_update())
                holder = _active(session, name, slot)
                if holder is not None:
                    return Acquired(holder, created=False)
                now = self.now()
                job = queued_job("retrain", config_text, queue, now, submitted_by=submitted_by, model_name=name)
                session.add(job)
                session.flush()  # the job row first: the slot's foreign key points at it
                if slot is None:
                    session.add(RetrainSlot(name=name, job_id=job.id, updated_at=now))
                else:
                    session.execute(_slot(name).values(job_id=job.id, updated_at=now))
                return Acquired(job, created=True)
        except IntegrityError:
            # Another acquirer inserted the slot first (PostgreSQL): its job holds the lock now.
            holder = self.active_job(name)
            if holder is None:  # it ended already: try again from the start
                return self.acquire(name, config_text, queue, submitted_by=submitted_by)
            return Acquired(holder, created=False)

    def claim_check(self, name: str, seen: datetime | None) -> bool:
        """Take the next dataset check of ``name``: True only for the caller whose ``seen`` (the
        ``checked_at`` it read) is still current; sets ``checked_at`` to now and clears any pending
        signal (the check that follows covers it)."""
        now = self.now()
        with self.store.write() as session:
            query = _slot(name).where(RetrainSlot.checked_at.is_not_distinct_from(seen))
            if changed(session, query.values(checked_at=now, signalled_at=None, updated_at=now)) == 1:
                return True
            if seen is not None or session.get(RetrainSlot, name) is not None:
                return False
        return self._insert(RetrainSlot(name=name, checked_at=now, updated_at=now))

    def note_check(self, name: str, dataset_hash: str | None, note: str) -> None:
        """Record what a check saw (None: keep the last hash) and did (shown by ``segpipe schedule``)."""
        values = {"note": note, "updated_at": self.now()}
        if dataset_hash is not None:
            values["dataset_hash"] = dataset_hash
        with self.store.write() as session:
            session.execute(_slot(name).values(**values))

    def signal(self, name: str) -> RetrainSlot:
        """Mark the dataset of ``name`` changed. Only the first signal since the last check counts:
        later ones keep its time, so a burst of signals leads to one check (debounce)."""
        now = self.now()
        for _ in range(3):  # the row may appear between our update and our insert (a racing tick or signal)
            with self.store.write() as session:
                first = _slot(name).where(RetrainSlot.signalled_at.is_(None))
                session.execute(first.values(signalled_at=now, updated_at=now))
                slot = session.get(RetrainSlot, name)
            if slot is not None:
                return slot
            row = RetrainSlot(name=name, signalled_at=now, updated_at=now)
            if self._insert(row):
                return row
        raise RuntimeError(f"retrain slot {name!r}: could not record the signal")  # pragma: no cover

    def _insert(self, row: RetrainSlot) -> bool:
        try:
            with self.store.write() as session:
                session.add(row)
            return True
        except IntegrityError:
            return False


def _slot(name: str) -> Any:
    return update(RetrainSlot).where(RetrainSlot.name == name).execution_options(synchronize_session=False)


def _active(session: Session, name: str, slot: RetrainSlot | None = None) -> Job | None:
    slot = slot or session.get(RetrainSlot, name)
    if slot is None or slot.job_id is None:
        return None
    # A new statement: on PostgreSQL it sees a job committed by whoever held the row lock before us.
    return session.scalar(select(Job).where(Job.id == slot.job_id, Job.state.in_(ACTIVE_STATES)))
