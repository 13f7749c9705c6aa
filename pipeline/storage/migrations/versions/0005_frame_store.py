"""Frames as references in a frame store.

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


def upgrade() -> None:
    # Nullable and without a default: existing rows keep their blobs and get no reference (a cheap ALTER everywhere).
    with op.batch_alter_table("defects") as batch:
        for name in URI_COLUMNS:
            batch.add_column(sa.Column(name, sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("defects") as batch:
        for name in reversed(URI_COLUMNS):
            batch.drop_column(name)
