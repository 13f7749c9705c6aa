"""Defect clusters: the cluster id `lineguard cluster` writes to each defect it embedded.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 07:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("defects") as batch:  # batch mode: SQLite cannot ALTER most things in place
        batch.add_column(sa.Column("cluster", sa.Integer(), nullable=True))
    op.create_index("ix_defects_cluster_captured", "defects", ["cluster", "captured_at"])


def downgrade() -> None:
    op.drop_index("ix_defects_cluster_captured", table_name="defects")
    with op.batch_alter_table("defects") as batch:
        batch.drop_column("cluster")
