"""False-alarm drift: each camera's running flag rate and normal-score shift, kept with its alert rule state.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 14:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_rule_state") as batch:  # batch mode: SQLite cannot ALTER most things in place
        batch.add_column(sa.Column("drift", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert_rule_state") as batch:
        batch.drop_column("drift")
