"""Frame sequence numbers as BIGINT (a camera counter outgrows 32 bits); alert rule state kept in the database.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 14:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("defects") as batch:
        batch.alter_column("seq", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False)
    op.create_table(
        "alert_rule_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("window", sa.JSON(), nullable=False),
        sa.Column("last_alert", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("camera_id", name="uq_alert_rule_state_camera"),
    )


def downgrade() -> None:
    op.drop_table("alert_rule_state")
    with op.batch_alter_table("defects") as batch:
        batch.alter_column("seq", existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False)
