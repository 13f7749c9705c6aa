"""Options and helpers the commands share: settings from options, environment and file; quiet Kafka logs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from pipeline.errors import LineGuardError
from pipeline.settings import Settings, load_settings

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="KEY=value file of LINEGUARD_* settings")]
BootstrapOpt = Annotated[str | None, typer.Option("--bootstrap", help="Kafka bootstrap servers HOST:PORT[,...]")]
TopicOpt = Annotated[str | None, typer.Option("--topic", help="frames topic (default lineguard.frames)")]
DbOpt = Annotated[str | None, typer.Option("--db", help="database URL (default sqlite:///lineguard.db)")]


def settings_from(config: Path | None, **overrides: object) -> Settings:
    """Options given on the command line win over LINEGUARD_* variables, which win over the --config file."""
    try:
        return load_settings(config, **overrides)
    except ValueError as exc:  # pydantic's ValidationError: name the field, not a traceback
        raise LineGuardError(f"invalid settings: {exc}") from exc


def quiet_kafka() -> None:
    # kafka-python logs every connection at INFO; the line's own log is what matters here.
    logging.getLogger("kafka").setLevel(logging.WARNING)


def stored_text(value: object) -> Text:
    """A stored value (camera id, label, model name, reason) as a Rich table cell: plain text, never markup (a camera
    id `[link=http://...]cam-1[/link]` shows as typed, `[/bold]` cannot break the table), and control characters
    (terminal escape sequences) shown as `?`."""
    return Text("".join(c if c.isprintable() else "?" for c in str(value)))
