"""Retraining: promotion decisions and the per-model retraining slots (lock + schedule bookkeeping).

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in segpipe.stores.models: a migration must not change when models do.
TIME = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OUTCOMES = "outcome IN ('promoted', 'rejected')"
SOURCES = "source IN ('gate', 'manual', 'rollback')"


def upgrade() -> None:
    op.create_table(
        "retrain_slots",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("checked_at", TIME, nullable=True),
        sa.Column("signalled_at", TIME, nullable=True),
        sa.Column("dataset_hash", sa.String(128), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_retrain_slots"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_retrain_slots_job_id_jobs", ondelete="SET NULL"),
    )

    op.create_table(
        "promotion_decisions",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("previous_version", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("metric", sa.String(255), nullable=True),
        sa.Column("candidate_metrics", sa.JSON(), nullable=False),
        sa.Column("production_metrics", sa.JSON(), nullable=True),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("decided_by", sa.String(255), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_promotion_decisions"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_promotion_decisions_job_id_jobs", ondelete="SET NULL"
        ),
        sa.CheckConstraint(OUTCOMES, name="ck_promotion_decisions_outcome"),
        sa.CheckConstraint(SOURCES, name="ck_promotion_decisions_source"),
    )
    op.create_index("ix_promotion_decisions_name_version", "promotion_decisions", ["name", "version"])


def downgrade() -> None:
    op.drop_index("ix_promotion_decisions_name_version", table_name="promotion_decisions")
    op.drop_table("promotion_decisions")
    op.drop_table("retrain_slots")
