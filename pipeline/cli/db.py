"""`lineguard db upgrade`: bring the database schema to the latest migration, once, before the consumers start."""

from __future__ import annotations

import typer

from pipeline.cli.options import ConfigOpt, DbOpt, settings_from

db_app = typer.Typer(help="Database schema upkeep.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(db: DbOpt = None, config: ConfigOpt = None) -> None:
    """Apply every pending Alembic migration (idempotent); the deployment's one-shot migrations step runs this."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    from pipeline.storage.engine import migrate

    settings = settings_from(config, database_url=db)
    migrate(settings.db_url)
    engine = create_engine(settings.db_url)
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    typer.echo(f"database schema at revision {revision}")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
