"""Engine setup (SQLite in WAL mode or PostgreSQL), Alembic migrations run from code, dialect-aware upserts."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class DatabaseTimeouts:
    """PostgreSQL limits that turn a hung server or a held lock into an error the writer retries."""

    connect_s: int = 10
    statement_s: float = 60.0
    lock_s: float = 15.0


def make_engine(
    url: str, timeouts: DatabaseTimeouts | None = None, writer: bool = False, read_only: bool = False, **kwargs: Any
) -> Engine:
    """An engine that survives a database restart (pre-ping); SQLite files in WAL mode, PostgreSQL with timeouts.

    `writer` (the consumer): on SQLite each transaction takes the write lock at BEGIN, so that the stored offsets a
    batch reads first cannot change before it writes (a deferred BEGIN reads them outside the lock, and may fail
    to upgrade it later). Readers (the review page, the CLI) keep deferred transactions and never block it.
    `read_only`: the database itself refuses every write on these connections.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        if read_only:
            event.listen(engine, "connect", _sqlite_query_only)
        event.listen(engine, "begin", _sqlite_begin_immediate if writer else _sqlite_begin)
        return engine
    if url.startswith("postgresql"):  # libpq drivers (psycopg 3 and 2) take these connection parameters
        limits = timeouts or DatabaseTimeouts()
        options = f"-c statement_timeout={int(limits.statement_s * 1000)} -c lock_timeout={int(limits.lock_s * 1000)}"
        if read_only:
            options += " -c default_transaction_read_only=on"
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


def _sqlite_query_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN")


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _quiet_alembic() -> None:
    alembic_log = logging.getLogger("alembic")
    if alembic_log.level == logging.NOTSET:
        alembic_log.setLevel(logging.WARNING)  # its per-plugin INFO lines drown the runtime's own log


def migrate(url: str, revision: str = "head") -> None:
    """Bring the schema at `url` up to `revision` with Alembic (idempotent)."""
    _quiet_alembic()
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def open_database(
    url: str, upgrade: bool = True, timeouts: DatabaseTimeouts | None = None, writer: bool = False
) -> tuple[Engine, sessionmaker[Session]]:
    """Engine and session factory for `url`, migrated to the latest schema unless upgrade=False."""
    if upgrade:
        migrate(url)
    engine = make_engine(url, timeouts, writer)
    return engine, sessionmaker(engine, expire_on_commit=False)


def open_database_read_only(url: str, timeouts: DatabaseTimeouts | None = None) -> tuple[Engine, sessionmaker[Session]]:
    """Engine and sessions that never write: nothing created (a missing SQLite file stays missing), nothing migrated
    (a schema behind the code is refused, with the command that migrates it), every transaction read-only
    (SQLite's query_only, PostgreSQL's default_transaction_read_only)."""
    _quiet_alembic()
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url

    shown = make_url(url).render_as_string(hide_password=True)
    upgrade = "`lineguard db upgrade --db ...` migrates it (--read-only never does)"
    if url.startswith("sqlite"):
        path = make_url(url).database or ""
        if path in ("", ":memory:") or not Path(path).is_file():
            raise ConfigError(f"no database at {shown}: {upgrade.replace('migrates', 'creates')}")
    engine = make_engine(url, timeouts, read_only=True)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except Exception:
        engine.dispose()
        raise
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    if current != head:
        engine.dispose()
        state = "has no LineGuard schema" if current is None else f"is at schema revision {current}, not {head}"
        raise ConfigError(f"the database at {shown} {state}: {upgrade}")
    return engine, sessionmaker(engine, expire_on_commit=False)


def dialect_insert(session: Session, table: Any) -> Any:
    """An INSERT supporting ON CONFLICT for the session's dialect (SQLite and PostgreSQL spell it alike)."""
    return dialect_insert_for(session.get_bind().dialect.name, table)


def per_dialect(build: Callable[[str], T]) -> Callable[[Session], T]:
    """`build(dialect name)` run once per dialect, its statement reused for every session of that dialect: building
    an upsert costs SQLAlchemy more Python than running it with a batch's rows as parameters."""
    built = functools.cache(build)
    return lambda session: built(session.get_bind().dialect.name)


def dialect_insert_for(name: str, table: Any) -> Any:
    """`dialect_insert` by dialect name, for statements built once per dialect (`per_dialect`)."""
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"database dialect {name!r} is not supported (use SQLite or PostgreSQL)")
