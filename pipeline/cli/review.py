"""`lineguard review serve`: the defect review web page (needs the `review` extra)."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.options import ConfigOpt, DbOpt, settings_from
from pipeline.errors import LineGuardError

# What the review extra brings; without any of them the command says how to install it.
REVIEW_LIBRARIES = frozenset({"fastapi", "starlette", "uvicorn", "jinja2"})

review_app = typer.Typer(help="The defect review web page.", no_args_is_help=True)


@review_app.command("serve")
def review_serve(
    db: DbOpt = None,
    host: Annotated[str | None, typer.Option(help="address to listen on (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on (default 8080)")] = None,
    root_path: Annotated[
        str | None, typer.Option(help="path a prefix-stripping reverse proxy serves the page under, e.g. /review")
    ] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="browse only; refuse every write")] = False,
    labels: Annotated[str | None, typer.Option(help="defect classes for keys 1-9, comma-separated")] = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the review page: filter and page defects, label them by keyboard, chart defect rates, export CSV.
    Writes need LINEGUARD_REVIEW_TOKEN or LINEGUARD_REVIEW_TOKENS (sent as a bearer token; `lineguard review
    token` makes one); without one, only --read-only starts, which never creates or migrates the database."""
    label_list = [label.strip() for label in labels.split(",") if label.strip()] if labels is not None else None
    settings = settings_from(
        config,
        database_url=db,
        review_host=host,
        review_port=port,
        review_root_path=root_path,
        review_labels=label_list,
    )
    try:
        from pipeline.review.server import serve
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in REVIEW_LIBRARIES:
            raise
        raise LineGuardError(
            f"the review page needs the review extra ({exc.name} is not installed): pip install 'lineguard[review]'"
        ) from exc
    serve(settings, read_only=read_only)


@review_app.command("token")
def review_token(
    reviewer: Annotated[
        str | None, typer.Option(help="print it as a review_tokens entry for this reviewer: JSON {NAME: TOKEN}")
    ] = None,
) -> None:
    """Print a new review token (256 random bits, URL-safe): for LINEGUARD_REVIEW_TOKEN, or one reviewer's entry
    of LINEGUARD_REVIEW_TOKENS, whose name the verdicts made with it record."""
    import json
    import secrets

    # the same rule the page applies at start-up (pipeline/review/auth.py); 32 bytes keep far above it
    token = secrets.token_urlsafe(32)
    typer.echo(json.dumps({reviewer: token}) if reviewer is not None else token)


def register(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")
