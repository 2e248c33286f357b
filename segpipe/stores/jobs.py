"""Job rows: the source of truth for job state, and the lease that makes at-least-once delivery safe.

Celery redelivers an unacked message (worker died, visibility timeout passed), so a job may arrive
twice. Whoever runs a job first `claim`s it: one conditional ``UPDATE … WHERE`` that succeeds only for
a queued job or a running job whose lease expired. Exactly one of two racing claimers wins: on
PostgreSQL the loser's UPDATE waits for the winner's row lock and then re-checks its WHERE against
the committed row; on SQLite write transactions are serialized (`Store.write`). The winner renews its
lease with `heartbeat` and stops when that returns False. State changes by a worker (`heartbeat`,
`update_progress`, `finish`) apply only while it still owns the lease, so a worker that lost its job
to another cannot overwrite it.

Every method is one transaction. Rows come back as detached `Job` snapshots: changing one does not
change the database.
"""

from __future__ import annotations

import builtins
import enum
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from segpipe import job_kinds
from segpipe.errors import ConfigError, NotFoundError
from segpipe.stores.db import Store, changed
from segpipe.stores.models import JOB_STATES, TERMINAL_STATES, Job, new_job_id, utcnow
from segpipe.vocabulary import ACTIVE_STATES

Clock = Callable[[], datetime]
MAX_ERROR_CHARS = 500


class ClaimOutcome(enum.StrEnum):
    CLAIMED = "claimed"  # queued → running: run it
    TAKEN_OVER = "taken_over"  # its previous owner's lease expired: resume from the last checkpoint
    DUPLICATE = "duplicate"  # running with a live lease elsewhere: a duplicate delivery, drop it
    FINISHED = "finished"  # already succeeded / failed / cancelled: nothing to do
    CANCELLED = "cancelled"  # cancel was requested before it could run: now marked cancelled
    GAVE_UP = "gave_up"  # claimed max_attempts times already: now marked failed
    MISSING = "missing"  # no such job (deleted, or a message from another database)


@dataclass(frozen=True)
class ClaimResult:
    outcome: ClaimOutcome
    job: Job | None

    @property
    def claimed(self) -> bool:
        """True when the caller now owns the job and must run it."""
        return self.outcome in (ClaimOutcome.CLAIMED, ClaimOutcome.TAKEN_OVER)


def one_line(message: str | None) -> str | None:
    """A failure reason for listings: the last non-empty line (where Python puts the exception), capped."""
    if not message:
        return message
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


class JobStore:
    """Job life cycle: create → claim → heartbeat / progress → finish, plus cancel and re-queue.

    ``now`` is the clock (aware UTC); tests inject one to expire leases without sleeping.
    """

    def __init__(self, store: Store, now: Clock = utcnow) -> None:
        self.store = store
        self.now = now

    # -- submit and read -------------------------------------------------------------------------

    def create(
        self,
        kind: str,
        config_text: str,
        queue: str,
        submitted_by: str | None = None,
        job_id: str | None = None,
        model_name: str | None = None,
    ) -> Job:
        """Insert a queued job; ``job_id`` defaults to a new uuid4 hex (it becomes the Celery task id).

        ``config_text`` is the resolved YAML. ``ValueError`` if ``job_id`` is taken.
        """
        job = queued_job(kind, config_text, queue, self.now(), submitted_by=submitted_by, job_id=job_id,
                         model_name=model_name)
        try:
            with self.store.write() as session:
                session.add(job)
        except IntegrityError as exc:
            raise ValueError(f"job {job.id} already exists") from exc
        return job

    def get(self, job_id: str) -> Job:
        """The job, or `NotFoundError`."""
        with self.store.read() as session:
            return _get(session, job_id)

    def find(self, job_id: str) -> Job | None:
        """The job, or None."""
        with self.store.read() as session:
            return session.get(Job, job_id)

    def list(
        self, state: str | None = None, kind: str | Sequence[str] | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[Job], int]:
        """One page of jobs, newest first, and the total number matching the filters; ``kind``: one kind or
        several (``job_kinds.with_capability(...)``).

        Shards of a predict job are listed only when asked for by ``kind``: their parent stands for them."""
        if state is not None and state not in JOB_STATES:
            raise ConfigError(f"unknown job state {state!r}; known states: {', '.join(JOB_STATES)}")
        filters: list[ColumnElement[bool]] = [] if kind is not None else [Job.parent_id.is_(None)]
        if state is not None:
            filters.append(Job.state == state)
        if isinstance(kind, str):
            filters.append(Job.kind == kind)
        elif kind is not None:
            filters.append(Job.kind.in_(list(kind)))
        with self.store.read() as session:
            total = session.scalar(select(func.count()).select_from(Job).where(*filters)) or 0
            rows = session.scalars(
                select(Job).where(*filters).order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
            ).all()
        return list(rows), total

    # -- the worker side: claim, heartbeat, progress, finish --------------------------------------

    def claim(self, job_id: str, owner: str, lease_seconds: float, max_attempts: int | None = None) -> ClaimResult:
        """Take the job for ``owner`` (unique per worker process, e.g. ``host:pid:random``).

        Succeeds for a queued job, or a running one whose lease expired (``TAKEN_OVER``): state
        becomes running, the lease is ``owner`` until now + ``lease_seconds``, attempts + 1, and
        started_at is set if unset. Otherwise says why not (see `ClaimOutcome`); a job with a
        pending cancel is marked cancelled, one already claimed ``max_attempts`` times is failed.
        """
        now = self.now()
        lease = {
            "state": "running",
            "lease_owner": owner,
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
            "attempts": Job.attempts + 1,
            "started_at": func.coalesce(Job.started_at, now),
            "worker": owner,
            "updated_at": now,
        }
        allowed: builtins.list[ColumnElement[bool]] = [Job.cancel_requested.is_(False)]
        if max_attempts is not None:
            allowed.append(Job.attempts < max_attempts)
        with self.store.write() as session:
            # Two conditional UPDATEs rather than one, so the outcome says which case applied.
            for outcome, condition in (
                (ClaimOutcome.CLAIMED, Job.state == "queued"),
                (ClaimOutcome.TAKEN_OVER, and_(Job.state == "running", _lease_expired(now))),
            ):
                job = session.scalar(_by_id(job_id).where(condition, *allowed).values(**lease).returning(Job))
                if job is not None:
                    return ClaimResult(outcome, job)
            return self._explain_refusal(session, job_id, now, max_attempts)

    def _explain_refusal(self, session: Session, job_id: str, now: datetime, max_attempts: int | None) -> ClaimResult:
        job = session.get(Job, job_id)
        if job is None:
            return ClaimResult(ClaimOutcome.MISSING, None)
        if job.state in TERMINAL_STATES:
            return ClaimResult(ClaimOutcome.FINISHED, job)
        if _lease_live(job, now):
            return ClaimResult(ClaimOutcome.DUPLICATE, job)
        # Queued, or running with an expired lease, yet not claimable: cancel pending or too many attempts.
        if job.cancel_requested:
            return ClaimResult(ClaimOutcome.CANCELLED, _end(session, job_id, now, "cancelled"))
        if max_attempts is None or job.attempts < max_attempts:
            # Changed hands between our UPDATE and this read (PostgreSQL, another claimer or the
            # reconciler): whoever moved it will run it or re-publish it.
            return ClaimResult(ClaimOutcome.DUPLICATE, job)
        reason = f"gave up after {job.attempts} attempts (max_attempts={max_attempts}): the worker died each time"
        return ClaimResult(ClaimOutcome.GAVE_UP, _end(session, job_id, now, "failed", reason))

    def heartbeat(self, job_id: str, owner: str, lease_seconds: float) -> bool:
        """Renew the lease to now + ``lease_seconds``. False: ``owner`` lost the job and must stop working on it."""
        now = self.now()
        with self.store.write() as session:
            result = changed(
                session,
                _owned_update(job_id, owner).values(
                    lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now
                ),
            )
            return result == 1

    def update_progress(self, job_id: str, owner: str, progress: dict[str, Any]) -> bool:
        """Merge ``progress`` into the job's progress (keys given replace old ones). False if not the owner."""
        now = self.now()
        with self.store.write() as session:
            current = _locked_if_owned(session, Job.progress, job_id, owner)
            if current is None:
                return False
            merged = {**current, **progress}
            return changed(session, _owned_update(job_id, owner).values(progress=merged, updated_at=now)) == 1

    def finish(
        self,
        job_id: str,
        owner: str,
        state: str,
        error: str | None = None,
        traceback: str | None = None,
        artifacts: dict[str, str] | None = None,
    ) -> bool:
        """End the job as ``state`` (succeeded | failed | cancelled), merging ``artifacts`` into its own.

        ``error`` is stored as one line (the last line of a message); the full text goes to
        ``traceback``. Only the lease owner can finish: False means someone else owns the job now.
        """
        if state not in TERMINAL_STATES:
            raise ValueError(f"finish: state must be one of {sorted(TERMINAL_STATES)}, not {state!r}")
        now = self.now()
        with self.store.write() as session:
            current = _locked_if_owned(session, Job.artifacts, job_id, owner)
            if current is None:
                return False
            result = changed(
                session,
                _owned_update(job_id, owner).values(
                    state=state,
                    error=one_line(error),
                    traceback=traceback,
                    artifacts={**current, **(artifacts or {})},
                    finished_at=now,
                    updated_at=now,
                    lease_expires_at=None,
                ),
            )
            return result == 1

    def add_artifacts(self, job_id: str, artifacts: dict[str, str]) -> None:
        """Merge name → relative path entries into the job's artifacts (while it runs or after)."""
        with self.store.write() as session:
            current = session.scalar(select(Job.artifacts).where(Job.id == job_id).with_for_update())
            if current is None:
                raise NotFoundError(f"job {job_id} does not exist")
            session.execute(_by_id(job_id).values(artifacts={**current, **artifacts}, updated_at=self.now()))

    def clear_artifacts(self, job_id: str, names: Sequence[str] | None = None) -> None:
        """Forget the job's artifacts ``names`` (all when None): their files were removed (`segpipe gc`)."""
        with self.store.write() as session:
            current = session.scalar(select(Job.artifacts).where(Job.id == job_id).with_for_update())
            if current is None:
                return
            kept = {} if names is None else {k: v for k, v in current.items() if k not in names}
            session.execute(_by_id(job_id).values(artifacts=kept, updated_at=self.now()))

    # -- cancellation ------------------------------------------------------------------------------

    def request_cancel(self, job_id: str) -> str:
        """Cancel a job; returns its state afterwards.

        Queued → cancelled at once (the caller should also revoke its message). Running → stays
        running with ``cancel_requested`` set; its worker sees the flag, checkpoints and finishes as
        cancelled. A finished job is left as it is.
        """
        now = self.now()
        with self.store.write() as session:
            done = changed(
                session,
                _by_id(job_id)
                .where(Job.state == "queued")
                .values(state="cancelled", cancel_requested=True, finished_at=now, updated_at=now),
            )
            if done == 1:
                return "cancelled"
            session.execute(_by_id(job_id).where(Job.state == "running").values(cancel_requested=True, updated_at=now))
            state = session.scalar(select(Job.state).where(Job.id == job_id))
            if state is None:
                raise NotFoundError(f"job {job_id} does not exist")
            return state

    def is_cancel_requested(self, job_id: str) -> bool:
        """True once a cancel was requested (also for a job already cancelled, or one that vanished)."""
        with self.store.read() as session:
            row = session.execute(select(Job.cancel_requested, Job.state).where(Job.id == job_id)).one_or_none()
        return row is None or bool(row.cancel_requested) or row.state == "cancelled"

    # -- the reconciler side ----------------------------------------------------------------------

    def expired_running(self, now: datetime | None = None) -> builtins.list[Job]:
        """Running jobs whose lease has expired: their worker died or hung. Oldest lease first."""
        now = now or self.now()
        with self.store.read() as session:
            rows = session.scalars(
                select(Job).where(Job.state == "running", _lease_expired(now)).order_by(Job.lease_expires_at)
            ).all()
        return list(rows)

    def queued_before(self, cutoff: datetime) -> builtins.list[Job]:
        """Queued jobs last changed before ``cutoff`` (candidates whose broker message may be lost), oldest first."""
        with self.store.read() as session:
            rows = session.scalars(
                select(Job).where(Job.state == "queued", Job.updated_at < cutoff).order_by(Job.updated_at, Job.id)
            ).all()
        return list(rows)

    def touch(self, job_id: str) -> bool:
        """Mark a queued job as just (re)published: the lost-message check waits a full period again."""
        with self.store.write() as session:
            return changed(session, _by_id(job_id).where(Job.state == "queued").values(updated_at=self.now())) == 1

    def requeue(self, job_id: str) -> bool:
        """Running with an expired lease → queued, lease cleared; True if so (then re-publish its message).

        An orphan with a pending cancel is marked cancelled instead (returns False).
        """
        now = self.now()
        with self.store.write() as session:
            orphan = and_(Job.state == "running", _lease_expired(now))
            cancelled = changed(
                session,
                _by_id(job_id)
                .where(orphan, Job.cancel_requested.is_(True))
                .values(state="cancelled", finished_at=now, updated_at=now, lease_expires_at=None),
            )
            if cancelled == 1:
                return False
            requeued = (
                _by_id(job_id)
                .where(orphan)
                .values(state="queued", lease_owner=None, lease_expires_at=None, updated_at=now)
            )
            return changed(session, requeued) == 1

    def record_model(self, job_id: str, name: str, version: int) -> None:
        """Record which model version a predict job runs (``NAME@production`` resolved when it started), so
        stored predictions can be found by version (the Label Studio ML backend reuses them)."""
        with self.store.write() as session:
            session.execute(update(Job).where(Job.id == job_id).values(model_name=name, model_version=version))

    def mark_failed(self, job_id: str, error: str, traceback: str | None = None) -> bool:
        """Fail a job that is not finished, whoever holds it (bad config at submit, reconciler gave up).

        True if it was queued or running; False if it had already finished.
        """
        now = self.now()
        with self.store.write() as session:
            if session.get(Job, job_id) is None:
                raise NotFoundError(f"job {job_id} does not exist")
            result = changed(
                session,
                _by_id(job_id)
                .where(Job.state.in_(ACTIVE_STATES))
                .values(
                    state="failed",
                    error=one_line(error),
                    traceback=traceback or error,
                    finished_at=now,
                    updated_at=now,
                    lease_expires_at=None,
                ),
            )
            return result == 1


# -- building blocks ---------------------------------------------------------------------------------


def queued_job(
    kind: str,
    config_text: str,
    queue: str,
    now: datetime,
    *,
    submitted_by: str | None = None,
    job_id: str | None = None,
    model_name: str | None = None,
    parent_id: str | None = None,
) -> Job:
    """A new queued `Job` row, not yet in any session (`JobStore.create`, and stores that must create a
    job in the same transaction as a row of their own). ``ConfigError`` for an unknown kind."""
    if kind not in job_kinds.KINDS:
        raise ConfigError(f"unknown job kind {kind!r}; known kinds: {', '.join(job_kinds.names())}")
    return Job(
        id=job_id or new_job_id(),
        kind=kind,
        config=config_text,
        state="queued",
        queue=queue,
        progress={},
        artifacts={},
        cancel_requested=False,
        attempts=0,
        created_at=now,
        updated_at=now,
        submitted_by=submitted_by,
        model_name=model_name,
        parent_id=parent_id,
    )


def _get(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist")
    return job


def _by_id(job_id: str) -> Any:
    # Core-style UPDATE: the sessions here hold no Job objects that would need synchronizing.
    return update(Job).where(Job.id == job_id).execution_options(synchronize_session=False)


def _owned_update(job_id: str, owner: str) -> Any:
    return _by_id(job_id).where(Job.lease_owner == owner, Job.state == "running")


def _locked_if_owned(session: Session, column: Any, job_id: str, owner: str) -> Any:
    """One column of the job if ``owner`` runs it, row-locked until commit (read-merge-write); else None.

    (SQLite ignores FOR UPDATE: its write transactions hold the database lock from BEGIN.)
    """
    query = select(column).where(Job.id == job_id, Job.lease_owner == owner, Job.state == "running")
    return session.scalar(query.with_for_update())


def _lease_expired(now: datetime) -> ColumnElement[bool]:
    return or_(Job.lease_expires_at.is_(None), Job.lease_expires_at <= now)


def _lease_live(job: Job, now: datetime) -> bool:
    return job.state == "running" and job.lease_expires_at is not None and job.lease_expires_at > now


def _end(session: Session, job_id: str, now: datetime, state: str, error: str | None = None) -> Job:
    """Move a not-finished job to a terminal state (used where no worker owns it); returns the new row."""
    session.execute(
        _by_id(job_id)
        .where(Job.state.in_(ACTIVE_STATES))
        .values(state=state, error=error, finished_at=now, updated_at=now, lease_expires_at=None)
    )
    session.expire_all()
    return _get(session, job_id)


def jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as plain JSON (numpy and torch scalars as numbers, anything else as its string)."""
    return json.loads(json.dumps(values, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
