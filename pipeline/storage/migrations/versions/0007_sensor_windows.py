"""Sensor streams: anomalous windows and the per-device window state.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sensor_anomalies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source_topic", sa.String(249), nullable=False),
        sa.Column("source_partition", sa.Integer(), nullable=False),
        sa.Column("source_offset", sa.BigInteger(), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("line_id", sa.String(128), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("top_channels", sa.JSON(), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.UniqueConstraint(
            "source_topic", "source_partition", "source_offset", "window_start", name="uq_sensor_anomalies_source"
        ),
    )
    op.create_index("ix_sensor_anomalies_device_start", "sensor_anomalies", ["device_id", "window_start"])
    op.create_table(
        "sensor_window_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("group_id", sa.String(249), nullable=False),
        sa.Column("topic", sa.String(249), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("line_id", sa.String(128), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("timestamps", sa.LargeBinary(), nullable=False),
        sa.Column("readings", sa.LargeBinary(), nullable=False),
        sa.Column("last_ts_ms", sa.Float(), nullable=True),
        sa.Column("period_ms", sa.Float(), nullable=True),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("group_id", "topic", "partition", "device_id", name="uq_sensor_window_state"),
    )


def downgrade() -> None:
    op.drop_table("sensor_window_state")
    op.drop_index("ix_sensor_anomalies_device_start", table_name="sensor_anomalies")
    op.drop_table("sensor_anomalies")
