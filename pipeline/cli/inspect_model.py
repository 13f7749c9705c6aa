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
from pipeline.contract import FalseAlarmSpec
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
    for block in ("sensor", "false_alarm"):
        if data[block] is None:
            del data[block]  # absent blocks: the output is what it was before they existed
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    table = Table(title=f"{model}", show_header=False)
    for key, value in data.items():
        table.add_row(key, stored_text(value if isinstance(value, str) else json.dumps(value)))  # a file's text
    if metadata.false_alarm is not None:
        table.add_row("false alarms", stored_text(describe_budget(metadata.false_alarm)))
    Console().print(table)


def describe_budget(budget: FalseAlarmSpec) -> str:
    """The threshold's false-alarm budget in words: what was asked, what the tail model expects, on how much data."""
    line = (
        f"budget {budget.rate:g} per frame; expected {budget.expected_rate:.2g} "
        f"(interval {budget.interval_low:.2g} to {budget.interval_high:.2g}) "
        f"from {budget.n_normals} held-out normal scores ({budget.method})"
    )
    return f"{line}; warning: {budget.warning}" if budget.warning else line


def register(app: typer.Typer) -> None:
    app.command("inspect-model")(inspect_model)
