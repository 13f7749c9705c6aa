"""Review notes and who reviewed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 14:00:00
"""

from __future__ import annotations

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved for issue 8; filled in by the commit that adds these tables/columns


def downgrade() -> None:
    pass
