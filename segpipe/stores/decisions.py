"""Promotion decisions: every promotion or rejection of a model version, with its reason and numbers.

A decision and the stage change it causes are one transaction: `DecisionStore.record` locks the
name's versions, optionally checks that production is still the version the candidate was compared
with (compare-and-set: a promotion that raced with another one is recorded as rejected, not applied
on top of it), promotes when the outcome says so and writes the decision row.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from segpipe.errors import ConfigError, NotFoundError
from segpipe.stores.db import Store
from segpipe.stores.models import (
    DECISION_OUTCOMES,
    DECISION_SOURCES,
    ModelVersion,
    PromotionDecision,
    utcnow,
)
from segpipe.stores.versions import lock_versions, promote_in


class DecisionStore:
    """Record and read decisions; ``now`` is the clock (aware UTC)."""

    def __init__(self, store: Store, now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.now = now

    def record(
        self,
        name: str,
        version: int,
        outcome: str,
        reason: str,
        *,
        source: str,
        metric: str | None = None,
        candidate_metrics: dict[str, Any] | None = None,
        production_metrics: dict[str, Any] | None = None,
        checks: builtins.list[dict[str, Any]] | None = None,
        job_id: str | None = None,
        decided_by: str | None = None,
        expect_production: int | None = None,
        check_production: bool = False,
    ) -> PromotionDecision:
        """Store a decision about ``name`` ``version``; ``outcome="promoted"`` also makes it production
        (the previous production version is archived), in the same transaction.

        With ``check_production`` the promotion happens only if production is still
        ``expect_production`` (None: still no production version); otherwise the decision is stored as
        rejected, saying which version became production meanwhile. `NotFoundError` if the version
        does not exist (nothing is stored).
        """
        if outcome not in DECISION_OUTCOMES:
            raise ConfigError(f"unknown decision outcome {outcome!r}; known: {', '.join(DECISION_OUTCOMES)}")
        if source not in DECISION_SOURCES:
            raise ConfigError(f"unknown decision source {source!r}; known: {', '.join(DECISION_SOURCES)}")
        with self.store.write() as session:
            current = lock_versions(session, name)
            if session.scalar(select(ModelVersion.id).where(ModelVersion.name == name, ModelVersion.version == version)) is None:
                raise NotFoundError(f"model {name!r} has no version {version}")
            if outcome == "promoted" and check_production and current != expect_production:
                outcome = "rejected"
                reason = (
                    f"production changed from {_v(expect_production)} to {_v(current)} in the meantime, so "
                    f"version {version} was not promoted (it was to be: {reason})"
                )
            if outcome == "promoted":
                promote_in(session, name, version)
            row = PromotionDecision(
                name=name,
                version=version,
                previous_version=current,
                outcome=outcome,
                source=source,
                reason=reason,
                metric=metric,
                candidate_metrics=dict(candidate_metrics or {}),
                production_metrics=None if production_metrics is None else dict(production_metrics),
                checks=list(checks or []),
                job_id=job_id,
                decided_by=decided_by,
                created_at=self.now(),
            )
            session.add(row)
        return row

    def list(self, name: str | None = None, limit: int = 100) -> builtins.list[PromotionDecision]:
        """Decisions, newest first, optionally of one model name."""
        query = select(PromotionDecision).order_by(PromotionDecision.id.desc()).limit(limit)
        if name is not None:
            query = query.where(PromotionDecision.name == name)
        with self.store.read() as session:
            return builtins.list(session.scalars(query))

    def for_version(self, name: str, version: int, source: str | None = None) -> PromotionDecision | None:
        """The newest decision about one version (of one source, if given), or None."""
        query = (
            select(PromotionDecision)
            .where(PromotionDecision.name == name, PromotionDecision.version == version)
            .order_by(PromotionDecision.id.desc())
            .limit(1)
        )
        if source is not None:
            query = query.where(PromotionDecision.source == source)
        with self.store.read() as session:
            return session.scalar(query)

    def rollback_target(self, name: str) -> int | None:
        """Where `segpipe rollback` goes: the newest version older than the current production one that
        was production before (promoted by a decision, or archived by a promotion). None if there is
        no production version or no such earlier one."""
        with self.store.read() as session:
            current = session.scalar(
                select(ModelVersion.version).where(ModelVersion.name == name, ModelVersion.stage == "production")
            )
            if current is None:
                return None
            promoted = select(PromotionDecision.version).where(
                PromotionDecision.name == name, PromotionDecision.outcome == "promoted"
            )
            query = select(ModelVersion.version).where(
                ModelVersion.name == name,
                ModelVersion.version < current,
                (ModelVersion.stage == "archived") | ModelVersion.version.in_(promoted),
            )
            return session.scalar(query.order_by(ModelVersion.version.desc()).limit(1))


def _v(version: int | None) -> str:
    return "none" if version is None else f"version {version}"
