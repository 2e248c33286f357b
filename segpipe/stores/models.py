"""ORM tables of the SQL store: jobs, predictions (+ the images each predict job has done or could not
read), model versions,
promotion decisions and the per-model retraining slots.

The schema itself is created and changed only by the Alembic migrations in ``migrations/versions``;
these classes describe it for queries. A test compares the two so they cannot drift apart.

Times are timezone-aware UTC ``datetime`` objects on both backends (see `UTCDateTime`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

JOB_STATES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
STAGES: tuple[str, ...] = ("candidate", "production", "archived")
DECISION_OUTCOMES: tuple[str, ...] = ("promoted", "rejected")
# gate: a retraining job's promotion gate; manual: `segpipe promote` / POST …/promote; rollback: `segpipe rollback`
DECISION_SOURCES: tuple[str, ...] = ("gate", "manual", "rollback")
# Alembic's bookkeeping table; named for segpipe so a database shared with another app cannot clash.
VERSION_TABLE = "segpipe_schema_version"


def utcnow() -> datetime:
    """The store's default clock: aware UTC now."""
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out.

    PostgreSQL stores ``timestamptz``. SQLite has no time type: SQLAlchemy stores a fixed-width
    ``YYYY-MM-DD HH:MM:SS.ffffff`` string and drops the zone, so values are converted to UTC first;
    the fixed width keeps string comparison (``lease_expires_at < now``) chronological.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # Naive times are ambiguous (local? UTC?); refusing them catches clock bugs early.
            raise ValueError(f"naive datetime {value!r}: the store takes timezone-aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Integer on SQLite (only INTEGER PRIMARY KEY is an auto-incrementing rowid), 64-bit elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Stable constraint names, so later migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[float]: JSON(),
        list[dict[str, Any]]: JSON(),
    }


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Job(Base):
    """One queued unit of work. ``id`` is also its Celery task id.

    ``progress`` holds ``epoch, epochs, step, steps, images_done, images_total, metrics``;
    ``artifacts`` maps a name to a path relative to the job's artifact folder.
    The lease (``lease_owner``, ``lease_expires_at``) is live while ``lease_expires_at > now``.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_one_of("state", JOB_STATES), name="state"),
        Index(None, "state", "created_at"),
        Index(None, "parent_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_job_id)
    kind: Mapped[str] = mapped_column(String(16))
    config: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    queue: Mapped[str] = mapped_column(String(64))
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    worker: Mapped[str | None] = mapped_column(String(255))
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(default=0)
    artifacts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    model_name: Mapped[str | None] = mapped_column(String(255))
    model_version: Mapped[int | None]
    submitted_by: Mapped[str | None] = mapped_column(String(255))
    # a shard's predict job (`segpipe.jobs.sharding`); None for every job people submit
    parent_id: Mapped[str | None] = mapped_column(String(64), ForeignKey("jobs.id", ondelete="CASCADE"))

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, kind={self.kind!r}, state={self.state!r}, attempts={self.attempts})"


class Prediction(Base):
    """One predicted instance (or one class region for semantic tasks) of one image.

    ``rle`` is compressed COCO RLE ``{"size": [h, w], "counts": str}`` (None for box-only detection and
    classification); ``bbox`` is ``[x, y, w, h]`` in pixels; ``category_id`` is the dataset's own id.
    """

    __tablename__ = "predictions"
    # The exactly-once key. Its index also serves every read: one image's masks (job_id and
    # image_key known — `PredictionStore.for_image` picks the job through prediction_images first)
    # is a single range scan already in instance order, and a job's rows (export, count) are a
    # prefix scan. A separate (image_key, job_id) index would answer nothing this one does not, and
    # would cost every insert.
    __table_args__ = (UniqueConstraint("job_id", "image_key", "instance"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    image_key: Mapped[str] = mapped_column(String(1024))
    instance: Mapped[int]
    category_id: Mapped[int | None]
    category_name: Mapped[str | None] = mapped_column(String(255))
    score: Mapped[float | None] = mapped_column(Float)
    bbox: Mapped[list[float] | None]
    rle: Mapped[dict[str, Any] | None]
    height: Mapped[int]
    width: Mapped[int]


class PredictionImage(Base):
    """Marks an image as done by a predict job; written in the same transaction as its instances.

    It is the commit record that makes per-image writes idempotent, and it also records images with
    zero instances, which have no `Prediction` row a resumed job could otherwise see.
    """

    __tablename__ = "prediction_images"
    # The primary key (job_id first) serves a job's done set; this one "latest job for an image".
    __table_args__ = (Index(None, "image_key"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    image_key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    instances: Mapped[int]
    height: Mapped[int | None]
    width: Mapped[int | None]
    created_at: Mapped[datetime]
    # "what to label next" (segpipe.ranking): the model's uncertainty in [0, 1] and the image's 64-bit dHash
    uncertainty: Mapped[float | None] = mapped_column(Float)
    fingerprint: Mapped[str | None] = mapped_column(String(16))


class PredictionFailure(Base):
    """An image a predict job could not read or refused (over the admission limits), with the reason.

    A separate table, so that every reader of `PredictionImage` keeps meaning "predicted"; a resumed
    job tries the image again and the first reason stays (insert or ignore).
    """

    __tablename__ = "prediction_failures"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    image_key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class ModelVersion(Base):
    """A trained model: ``version`` counts 1, 2, … per ``name``; at most one ``production`` per name."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        CheckConstraint(_one_of("stage", STAGES), name="stage"),
        # A partial unique index makes "one production version per name" a database guarantee.
        Index(
            "uq_model_versions_one_production",
            "name",
            unique=True,
            postgresql_where=text("stage = 'production'"),
            sqlite_where=text("stage = 'production'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    version: Mapped[int]
    task: Mapped[str] = mapped_column(String(32))
    stage: Mapped[str] = mapped_column(String(16), default="candidate")
    config: Mapped[str] = mapped_column(Text)
    dataset_hash: Mapped[str | None] = mapped_column(String(128))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    checkpoint: Mapped[str | None] = mapped_column(Text)
    parent_version: Mapped[int | None]
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"ModelVersion(name={self.name!r}, version={self.version}, stage={self.stage!r})"


class RetrainSlot(Base):
    """Per model name: the retraining lock and the schedule's bookkeeping (one row per name).

    ``job_id`` is the newest retrain job queued for the name. While that job is queued or running, no
    second one is queued: `RetrainSlotStore.acquire` locks this row (or races to insert it) in the
    transaction that creates the job. ``checked_at`` is when a schedule tick last checked the dataset
    (taken by compare-and-set, so one beat process checks per period); ``signalled_at`` is the first
    "dataset changed" signal not acted on yet; ``dataset_hash`` and ``note`` say what the last check saw
    and did.
    """

    __tablename__ = "retrain_slots"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    checked_at: Mapped[datetime | None]
    signalled_at: Mapped[datetime | None]
    dataset_hash: Mapped[str | None] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"RetrainSlot(name={self.name!r}, job_id={self.job_id!r}, checked_at={self.checked_at!r})"


class PromotionDecision(Base):
    """One decision about a model version: promoted to production or rejected, with why and the numbers.

    ``version`` is the version decided about; ``previous_version`` the production version at that moment
    (None: there was none). Gate decisions carry the primary ``metric``, both sides' scalar metrics on
    the same validation set and ``checks`` (one dict per compared metric: metric, role, mode, candidate,
    production, change, limit, passed).
    """

    __tablename__ = "promotion_decisions"
    __table_args__ = (
        CheckConstraint(_one_of("outcome", DECISION_OUTCOMES), name="outcome"),
        CheckConstraint(_one_of("source", DECISION_SOURCES), name="source"),
        Index(None, "name", "version"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    version: Mapped[int]
    previous_version: Mapped[int | None]
    outcome: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    metric: Mapped[str | None] = mapped_column(String(255))
    candidate_metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    production_metrics: Mapped[dict[str, Any] | None]
    checks: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    decided_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"PromotionDecision(name={self.name!r}, version={self.version}, outcome={self.outcome!r})"


class PageSession(Base):
    """A login to the review pages: the cookie carries a random session id; only its SHA-256 is stored here.

    ``token_digest`` is the SHA-256 of the API token that logged in: every use checks that token is still
    configured (removing a token from ``SEGPIPE_TOKENS`` ends its sessions), and its role is taken from it.
    A session is live while ``revoked_at`` is None and ``expires_at > now``.
    """

    __tablename__ = "page_sessions"
    __table_args__ = (Index(None, "expires_at"),)

    id_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_digest: Mapped[str] = mapped_column(String(64))
    principal: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"PageSession(principal={self.principal!r}, expires_at={self.expires_at!r}, revoked={self.revoked_at is not None})"
