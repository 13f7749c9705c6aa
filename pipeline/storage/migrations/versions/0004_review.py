"""Review notes and who reviewed; defects filterable by model version.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("defects") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("reviewed_by", sa.String(128), nullable=True))
        batch.create_index("ix_defects_model_version", ["model_version"])


def downgrade() -> None:
    with op.batch_alter_table("defects") as batch:
        batch.drop_index("ix_defects_model_version")
        batch.drop_column("reviewed_by")
        batch.drop_column("note")
