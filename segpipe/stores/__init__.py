"""Where segpipe keeps state: jobs, predictions and model versions in SQL; files under an artifact root.

The SQL store is the source of truth for job state (not Celery's result backend). One `Stores`
bundle per process::

    stores = Stores.from_settings()          # SQLite under SEGPIPE_HOME, or SEGPIPE_DATABASE_URL
    job = stores.jobs.create("train", config_text, queue="gpu")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

from sqlalchemy.engine import URL

from segpipe.settings import Settings, get_settings
from segpipe.stores.artifacts import ArtifactPathError, ArtifactStore
from segpipe.stores.db import Store, make_engine, migrate, session_factory
from segpipe.stores.decisions import DecisionStore
from segpipe.stores.jobs import ClaimOutcome, ClaimResult, JobStore
from segpipe.stores.models import (
    JOB_STATES,
    STAGES,
    TERMINAL_STATES,
    Job,
    ModelVersion,
    PromotionDecision,
    RetrainSlot,
    utcnow,
)
from segpipe.stores.page_sessions import PageSessionStore
from segpipe.stores.predictions import PredictionRow, PredictionStore
from segpipe.stores.retrain_slots import Acquired, RetrainSlotStore
from segpipe.stores.shards import ShardStore
from segpipe.stores.versions import ModelVersionStore

__all__ = [
    "JOB_STATES",
    "STAGES",
    "TERMINAL_STATES",
    "Acquired",
    "ArtifactPathError",
    "ArtifactStore",
    "ClaimOutcome",
    "ClaimResult",
    "DecisionStore",
    "Job",
    "JobStore",
    "ModelVersion",
    "ModelVersionStore",
    "PageSessionStore",
    "PredictionRow",
    "PredictionStore",
    "PromotionDecision",
    "RetrainSlot",
    "RetrainSlotStore",
    "ShardStore",
    "Store",
    "Stores",
    "make_engine",
    "migrate",
    "session_factory",
]


@dataclass
class Stores:
    """The stores over one database and one artifact root.

    ``decisions`` and ``retrain`` are built on first use from ``db`` with the versions store's clock,
    so code that constructs a `Stores` by hand needs no change.
    """

    db: Store
    jobs: JobStore
    predictions: PredictionStore
    versions: ModelVersionStore
    artifacts: ArtifactStore

    @classmethod
    def open(
        cls,
        url: str | URL,
        artifact_root: str | Path,
        *,
        migrate_schema: bool = True,
        now: Callable[[], datetime] = utcnow,
        cache_dir: Path | None = None,
        cache_max_bytes: int = 20 * 2**30,
    ) -> Stores:
        """Connect to ``url`` (upgrading its schema unless ``migrate_schema`` is False). An object-store
        ``artifact_root`` needs ``cache_dir``: this process's mirror and download cache."""
        from segpipe.storage.cache import DownloadCache

        db = Store.from_url(url, migrate_schema=migrate_schema)
        jobs = JobStore(db, now=now)
        mirror = cache = None
        if cache_dir is not None:
            mirror, cache = cache_dir / "artifacts", DownloadCache(cache_dir / "downloads", cache_max_bytes)
        return cls(
            db=db,
            jobs=jobs,
            predictions=PredictionStore(db, now=now),
            versions=ModelVersionStore(db, now=now),
            artifacts=ArtifactStore(artifact_root, jobs=jobs, mirror=mirror, cache=cache),
        )

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, migrate_schema: bool = True) -> Stores:
        """From `Settings` (default: this process's, from the ``SEGPIPE_*`` environment)."""
        settings = settings or get_settings()
        return cls.open(settings.db_url, settings.artifacts, migrate_schema=migrate_schema,
                        cache_dir=settings.cache_dir, cache_max_bytes=int(settings.cache_max_gb * 2**30))

    @cached_property
    def decisions(self) -> DecisionStore:
        """Promotion decisions (`segpipe.stores.decisions`)."""
        return DecisionStore(self.db, now=self.versions.now)

    @cached_property
    def retrain(self) -> RetrainSlotStore:
        """The per-model retraining lock and schedule bookkeeping (`segpipe.stores.retrain_slots`)."""
        return RetrainSlotStore(self.db, now=self.versions.now)

    @cached_property
    def shards(self) -> ShardStore:
        """The shards of sharded predict jobs (`segpipe.stores.shards`)."""
        return ShardStore(self.db, now=self.jobs.now)

    @cached_property
    def sessions(self) -> PageSessionStore:
        """The review pages' login sessions (`segpipe.stores.page_sessions`)."""
        return PageSessionStore(self.db, now=self.jobs.now)

    def close(self) -> None:
        self.db.dispose()
