"""The images a predict job could not read or refused, with the reason (`prediction_failures`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "prediction_failures",
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("image_key", sa.String(1024), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_prediction_failures_job_id_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "image_key", name="pk_prediction_failures"),
    )


def downgrade() -> None:
    op.drop_table("prediction_failures")
