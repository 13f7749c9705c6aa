"""Model registry: metrics, active version, promotion record.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 14:00:00
"""

from __future__ import annotations

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved for issue 8; filled in by the commit that adds these tables/columns


def downgrade() -> None:
    pass
