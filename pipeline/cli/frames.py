"""`lineguard frames gc | prune`: upkeep of the frame store that holds the defects' images."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from pipeline.cli.options import ConfigOpt, DbOpt, settings_from
from pipeline.errors import LineGuardError

frames_app = typer.Typer(help="Frame store upkeep: orphan sweep and retention.", no_args_is_help=True)

StoreOpt = Annotated[str | None, typer.Option("--store", help="frame store URL (default: setting frame_store_url)")]


@frames_app.command("gc")
def frames_gc(
    older_than: Annotated[
        str, typer.Option(help="only objects written longer ago (longer than any batch transaction takes)")
    ] = "1h",
    store: StoreOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Delete objects no defect row references (left by a crash between a batch's writes and its commit)."""
    from pipeline.frames.store import FrameStore
    from pipeline.frames.sweep import collect_garbage
    from pipeline.storage.engine import open_database
    from pipeline.storage.review import parse_duration

    age = parse_duration(older_than, "--older-than")
    settings = settings_from(config, database_url=db, frame_store_url=store)
    _, sessions = open_database(settings.db_url)
    stats = collect_garbage(FrameStore(settings.frame_store_url), sessions, age)
    typer.echo(json.dumps(asdict(stats)))


@frames_app.command("prune")
def frames_prune(
    days: Annotated[float | None, typer.Option(help="retention (default: setting frame_retention_days)")] = None,
    store: StoreOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Drop the images of defects detected more than the retention ago (the verdicts and reviews stay)."""
    from pipeline.frames.store import FrameStore
    from pipeline.frames.sweep import prune_frames
    from pipeline.storage.engine import open_database

    settings = settings_from(config, database_url=db, frame_store_url=store, frame_retention_days=days)
    if settings.frame_retention_days is None:
        raise LineGuardError("no retention: pass --days or set LINEGUARD_FRAME_RETENTION_DAYS")
    _, sessions = open_database(settings.db_url)
    stats = prune_frames(FrameStore(settings.frame_store_url), sessions, settings.frame_retention_days)
    typer.echo(json.dumps(asdict(stats)))


def register(app: typer.Typer) -> None:
    app.add_typer(frames_app, name="frames")
