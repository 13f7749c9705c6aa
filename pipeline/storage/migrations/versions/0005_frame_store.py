"""Frames as references in a frame store; review listings indexed newest first.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

URI_COLUMNS = ("frame_uri", "overlay_uri", "restored_uri")
# (dropped, created): a filter's index ends in captured_at so that its newest-first page needs no sort
REPLACED = (
    ("ix_defects_label", ["label"], "ix_defects_label_captured", ["label", "captured_at"]),
    ("ix_defects_model_version", ["model_version"], "ix_defects_model_captured", ["model_version", "captured_at"]),
)


def upgrade() -> None:
    # Nullable and without a default: existing rows keep their blobs and get no reference (a cheap ALTER everywhere).
    with op.batch_alter_table("defects") as batch:
        for name in URI_COLUMNS:
            batch.add_column(sa.Column(name, sa.Text(), nullable=True))
    op.create_index("ix_defects_captured", "defects", ["captured_at", "id"])
    for old, _, new, columns in REPLACED:
        op.drop_index(old, table_name="defects")
        op.create_index(new, "defects", columns)


def downgrade() -> None:
    for old, old_columns, new, _ in REPLACED:
        op.drop_index(new, table_name="defects")
        op.create_index(old, "defects", old_columns)
    op.drop_index("ix_defects_captured", table_name="defects")
    with op.batch_alter_table("defects") as batch:
        for name in reversed(URI_COLUMNS):
            batch.drop_column(name)
