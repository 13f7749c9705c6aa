"""`lineguard db upgrade`: the deployment's one-shot migrations step, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from pipeline.cli.app import build_app


def test_db_upgrade_creates_the_schema_and_is_idempotent(db_url: str) -> None:
    runner = CliRunner()
    for _ in range(2):  # a second run (every `docker compose up`) finds nothing to do and still succeeds
        result = runner.invoke(build_app(), ["db", "upgrade", "--db", db_url])
        assert result.exit_code == 0, result.output
        assert "database schema at revision" in result.output
    engine = create_engine(db_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"defects", "alembic_version"} <= tables
