"""Model registry: metrics, active version, promotion record.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_registry",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("model_metadata", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("evaluation_digest", sa.String(64), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("model_name", "model_version", name="uq_model_registry"),
    )
    op.create_table(
        "model_promotions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("model_registry.id"), nullable=False),
        sa.Column("previous_version_id", sa.Integer(), sa.ForeignKey("model_registry.id"), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("comparison", sa.JSON(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_model_promotions_version", "model_promotions", ["version_id"])
    op.create_table(
        "active_models",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("model_registry.id"), nullable=False),
        sa.Column("promotion_id", sa.Integer(), sa.ForeignKey("model_promotions.id"), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("model_name", name="uq_active_models"),
    )


def downgrade() -> None:
    op.drop_table("active_models")
    op.drop_index("ix_model_promotions_version", table_name="model_promotions")
    op.drop_table("model_promotions")
    op.drop_table("model_registry")
