"""Engine setup (SQLite in WAL mode or PostgreSQL), Alembic migrations run from code, dialect-aware upserts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class DatabaseTimeouts:
    """PostgreSQL limits that turn a hung server or a held lock into an error the writer retries."""

    connect_s: int = 10
    statement_s: float = 60.0
    lock_s: float = 15.0


def make_engine(url: str, timeouts: DatabaseTimeouts | None = None, **kwargs: Any) -> Engine:
    """An engine that survives a database restart (pre-ping); SQLite files in WAL mode, PostgreSQL with timeouts."""
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    if url.startswith("postgresql"):  # libpq drivers (psycopg 3 and 2) take these connection parameters
        limits = timeouts or DatabaseTimeouts()
        options = f"-c statement_timeout={int(limits.statement_s * 1000)} -c lock_timeout={int(limits.lock_s * 1000)}"
        kwargs.setdefault("connect_args", {"connect_timeout": limits.connect_s, "options": options})
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling is off (SQLAlchemy's documented recipe): it would begin lazily,
    # after the first read, and does not support SAVEPOINT; `_sqlite_begin_immediate` begins instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets `defects list` read while the consumer writes; NORMAL sync is durable at WAL checkpoints
    # and loses at most the last transaction on power loss, which Kafka replays (offsets uncommitted).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    # IMMEDIATE takes the write lock at BEGIN: the stored offsets a batch reads first cannot change before it
    # writes (a deferred BEGIN would read them outside the write lock, and could fail to upgrade it later).
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Bring the schema at `url` up to `revision` with Alembic (idempotent)."""
    alembic_log = logging.getLogger("alembic")
    if alembic_log.level == logging.NOTSET:
        alembic_log.setLevel(logging.WARNING)  # its per-plugin INFO lines drown the runtime's own log
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def open_database(
    url: str, upgrade: bool = True, timeouts: DatabaseTimeouts | None = None
) -> tuple[Engine, sessionmaker[Session]]:
    """Engine and session factory for `url`, migrated to the latest schema unless upgrade=False."""
    if upgrade:
        migrate(url)
    engine = make_engine(url, timeouts)
    return engine, sessionmaker(engine, expire_on_commit=False)


def dialect_insert(session: Session, table: Any) -> Any:
    """An INSERT supporting ON CONFLICT for the session's dialect (SQLite and PostgreSQL spell it alike)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"database dialect {name!r} is not supported (use SQLite or PostgreSQL)")
