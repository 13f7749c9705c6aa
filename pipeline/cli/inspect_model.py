"""`lineguard inspect-model`: print a model file's embedded metadata."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.options import stored_text
from pipeline.errors import LineGuardError


def inspect_model(
    model: Annotated[Path, typer.Argument(help="LineGuard .onnx model file")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Print the metadata a LineGuard ONNX model carries (thresholds, input layout, provenance)."""
    from pipeline.inference import read_metadata

    try:
        metadata = read_metadata(model)
    except LineGuardError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from exc
    data = asdict(metadata)
    if data["sensor"] is None:
        del data["sensor"]  # image models: the output is what it was before sensor models
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    table = Table(title=f"{model}", show_header=False)
    for key, value in data.items():
        table.add_row(key, stored_text(value if isinstance(value, str) else json.dumps(value)))  # a file's text
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("inspect-model")(inspect_model)
