"""What to label next: each predicted image's uncertainty and fingerprint (`prediction_images`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("prediction_images") as batch:
        batch.add_column(sa.Column("uncertainty", sa.Float(), nullable=True))
        batch.add_column(sa.Column("fingerprint", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prediction_images") as batch:
        batch.drop_column("fingerprint")
        batch.drop_column("uncertainty")
