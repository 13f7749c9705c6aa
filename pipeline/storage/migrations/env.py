"""Alembic environment for LineGuard: online migrations against the URL the caller configured."""

from __future__ import annotations

from alembic import context

from pipeline.storage.engine import make_engine
from pipeline.storage.tables import Base

config = context.config
url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
engine = make_engine(url)
with engine.connect() as connection:
    # render_as_batch: SQLite can only ALTER tables by copying them; batch mode does that for later revisions.
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
