"""Operating-point adaptation on the line: each device's run baseline, kept with its window state.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sensor_window_state") as batch:  # batch mode: SQLite cannot ALTER most things in place
        batch.add_column(sa.Column("adapt_rows", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("baseline_level", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("baseline_scale", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sensor_window_state") as batch:
        batch.drop_column("baseline_scale")
        batch.drop_column("baseline_level")
        batch.drop_column("adapt_rows")
