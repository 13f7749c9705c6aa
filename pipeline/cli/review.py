"""`lineguard review serve`: the defect review web page (needs the `review` extra)."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.options import ConfigOpt, DbOpt, settings_from
from pipeline.errors import LineGuardError

# What the review extra brings; without any of them the command says how to install it.
REVIEW_LIBRARIES = frozenset({"fastapi", "starlette", "uvicorn", "jinja2", "multipart", "python_multipart"})

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
    Writes need LINEGUARD_REVIEW_TOKEN (sent as a bearer token); without it, only --read-only starts."""
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


def register(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")
