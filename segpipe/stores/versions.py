"""Model versions: every trained model keeps its config, dataset hash, metrics, checkpoint and parent.

Versions count 1, 2, … per model name. A new version is a ``candidate``; `promote` makes it the
``production`` version and archives the previous one in the same transaction. "At most one
production version per name" is also a partial unique index, so no code path can break it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from segpipe.errors import ConfigError, NotFoundError
from segpipe.stores.db import Store, changed
from segpipe.stores.models import STAGES, Job, ModelVersion, utcnow

# Two processes registering the same name at once may pick the same next number; the unique
# (name, version) key rejects one, which then retries with the next number.
_REGISTER_TRIES = 5


class ModelVersionStore:
    def __init__(self, store: Store, now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.now = now

    def register(
        self,
        name: str,
        task: str,
        config_text: str,
        *,
        checkpoint: str | None = None,
        metrics: dict[str, Any] | None = None,
        dataset_hash: str | None = None,
        parent_version: int | None = None,
        job_id: str | None = None,
    ) -> ModelVersion:
        """Add the next version of ``name`` as a candidate. ``checkpoint`` is relative to the artifact root.

        With ``job_id`` the job row also records the name and the new version number (same transaction).
        """
        fields = {
            "name": name,
            "task": task,
            "stage": "candidate",
            "config": config_text,
            "dataset_hash": dataset_hash,
            "metrics": dict(metrics or {}),
            "checkpoint": checkpoint,
            "parent_version": parent_version,
            "job_id": job_id,
            "created_at": self.now(),
        }
        tries = 1
        while True:
            try:
                with self.store.write() as session:
                    if job_id is not None and session.get(Job, job_id) is None:
                        raise NotFoundError(f"model {name!r}: job {job_id} does not exist")
                    latest = session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == name))
                    row = ModelVersion(version=(latest or 0) + 1, **fields)
                    session.add(row)
                    if job_id is not None:
                        # The job says which version it made (listings, `GET /jobs/{id}`).
                        session.execute(
                            update(Job).where(Job.id == job_id).values(model_name=name, model_version=row.version)
                        )
                return row
            except IntegrityError:
                if tries >= _REGISTER_TRIES:
                    raise
                tries += 1

    def get(self, name: str, version: int) -> ModelVersion:
        """The version, or `NotFoundError`."""
        with self.store.read() as session:
            row = session.scalar(_one(name, version))
        if row is None:
            raise NotFoundError(f"model {name!r} has no version {version}")
        return row

    def list(self, name: str | None = None, stage: str | None = None) -> list[ModelVersion]:
        """Versions, by name then newest first, optionally of one name and/or stage."""
        query = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version.desc())
        if name is not None:
            query = query.where(ModelVersion.name == name)
        if stage is not None:
            _check_stage(stage)
            query = query.where(ModelVersion.stage == stage)
        with self.store.read() as session:
            return list(session.scalars(query))

    def latest(self, name: str) -> ModelVersion | None:
        """The newest version of ``name`` in any stage, or None."""
        query = select(ModelVersion).where(ModelVersion.name == name).order_by(ModelVersion.version.desc()).limit(1)
        with self.store.read() as session:
            return session.scalar(query)

    def for_job(self, job_id: str) -> ModelVersion | None:
        """The version a training / retraining job registered, or None (lets a resumed job not register twice)."""
        query = select(ModelVersion).where(ModelVersion.job_id == job_id).order_by(ModelVersion.version).limit(1)
        with self.store.read() as session:
            return session.scalar(query)

    def trained_on(self, name: str, dataset_hash: str) -> ModelVersion | None:
        """The newest version of ``name`` trained on data with this content hash, or None."""
        query = (
            select(ModelVersion)
            .where(ModelVersion.name == name, ModelVersion.dataset_hash == dataset_hash)
            .order_by(ModelVersion.version.desc())
            .limit(1)
        )
        with self.store.read() as session:
            return session.scalar(query)

    def production(self, name: str) -> ModelVersion | None:
        """The production version of ``name``, or None if none was promoted yet."""
        query = select(ModelVersion).where(ModelVersion.name == name, ModelVersion.stage == "production")
        with self.store.read() as session:
            return session.scalar(query)

    def promote(self, name: str, version: int) -> ModelVersion:
        """Make ``version`` the production version of ``name``; the previous one becomes archived.

        One transaction. Concurrent promotions of one name are serialized by locking its rows first
        (PostgreSQL ``FOR UPDATE``; SQLite write transactions are serialized anyway), so the second
        sees the first's result and archives it.
        """
        with self.store.write() as session:
            lock_versions(session, name)
            return promote_in(session, name, version)

    def archive(self, name: str, version: int) -> ModelVersion:
        """Retire a version (for instance a candidate that lost to production)."""
        with self.store.write() as session:
            done = changed(session, _versions_of(name).where(ModelVersion.version == version).values(stage="archived"))
            if done != 1:
                raise NotFoundError(f"model {name!r} has no version {version}")
            return session.scalars(_one(name, version)).one()


def lock_versions(session: Session, name: str) -> int | None:
    """Row-lock every version of ``name`` until the transaction ends (PostgreSQL ``FOR UPDATE``; SQLite
    write transactions are serialized anyway); returns the production version number, or None."""
    rows = session.execute(
        select(ModelVersion.version, ModelVersion.stage).where(ModelVersion.name == name).with_for_update()
    ).all()
    return next((row.version for row in rows if row.stage == "production"), None)


def promote_in(session: Session, name: str, version: int) -> ModelVersion:
    """Inside a transaction that holds `lock_versions(name)`: make ``version`` production, archive the
    previous production version; `NotFoundError` (nothing changed) if the version does not exist."""
    if session.scalar(_one(name, version)) is None:
        raise NotFoundError(f"model {name!r} has no version {version}")
    # Archive first: the partial unique index is checked statement by statement.
    session.execute(
        _versions_of(name)
        .where(ModelVersion.stage == "production", ModelVersion.version != version)
        .values(stage="archived")
    )
    session.execute(_versions_of(name).where(ModelVersion.version == version).values(stage="production"))
    session.expire_all()
    return session.scalars(_one(name, version)).one()


def _one(name: str, version: int) -> Any:
    return select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)


def _versions_of(name: str) -> Any:
    return update(ModelVersion).where(ModelVersion.name == name).execution_options(synchronize_session=False)


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ConfigError(f"unknown model stage {stage!r}; known stages: {', '.join(STAGES)}")
